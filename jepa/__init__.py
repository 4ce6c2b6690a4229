"""Shared JEPA core: ViT encoder and predictor, masking, EMA, schedules, the JEPA training module and the `jepa` CLI."""
from jepa.errors import ConfigError
from jepa.masking import apply_masks
from jepa.vit import Predictor, VisionTransformer

__all__ = ["ConfigError", "Predictor", "VisionTransformer", "apply_masks"]
