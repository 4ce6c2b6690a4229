"""Video JEPA: 3-D multi-block masks and the VJEPA LightningModule (the tubelet encoder is the shared
jepa.vit.VisionTransformer). Video data and clip probes: docs/video.md."""
from vjepa.masks import MultiBlock3DMaskSampler, VideoMasks
from vjepa.module import VJEPA

__all__ = ["VJEPA", "MultiBlock3DMaskSampler", "VideoMasks"]
