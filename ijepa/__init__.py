"""Image JEPA: the multi-block mask sampler and the IJEPA LightningModule."""
from ijepa.masks import Masks, MultiBlockMaskSampler
from ijepa.module import IJEPA

__all__ = ["IJEPA", "Masks", "MultiBlockMaskSampler"]
