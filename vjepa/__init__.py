"""Video JEPA: 3-D multi-block masks (vjepa.masks); the tubelet encoder is the shared jepa.vit.VisionTransformer.
The VJEPA module, video data and clip probes are not built yet: see issue 5 and DESIGN.md section 5."""
