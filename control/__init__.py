"""World model, costs, actor and planners on frozen JEPA encoders. Not built yet: see issues 6-7 and DESIGN.md section 6."""
