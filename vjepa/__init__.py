"""Video JEPA (tubelet ViT, 3-D multi-block masks, VJEPA module). Not built yet: see issue 5 and DESIGN.md section 5."""
