"""JepaEncoder: an exported encoder with huggingface_hub's model mixin (save_pretrained, from_pretrained,
push_to_hub). The folder it writes is `jepa export`'s (jepa/export.py), so timm reads it too.

    encoder = JepaEncoder.from_pretrained("runs/export/fmnist")    # a local folder: nothing is downloaded
    encoder.push_to_hub("user/fmnist-ijepa")                        # only when asked, with the user's token
"""
from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import ModelHubMixin
from torch import nn

from jepa.export import CONFIG, LEGACY_WEIGHTS, WEIGHTS, export_encoder, load_exported
from jepa.vit import VisionTransformer


class JepaEncoder(nn.Module, ModelHubMixin, library_name="timm", tags=["jepa", "image-feature-extraction"]):
    """A frozen ViT encoder and its export metadata (normalisation, source, licence).

    forward(x) returns the patch tokens [B, N, D]; pooled(x) their average [B, D] (the export's pooling).
    """

    def __init__(self, encoder: VisionTransformer, metadata: dict | None = None) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.metadata = dict(metadata or {})

    @property
    def normalisation(self) -> dict | None:
        return self.metadata.get("normalisation")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=1)

    def _save_pretrained(self, save_directory: Path) -> None:
        norm = self.normalisation or {}
        export_encoder(self.encoder, save_directory, self.metadata.get("source") or {}, self.metadata.get("licence"),
                       norm.get("mean"), norm.get("std"), self.metadata.get("pooling", "avg"))

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool,
                         local_files_only: bool, token, **model_kwargs) -> "JepaEncoder":
        folder = Path(model_id)
        if not folder.is_dir():  # a Hub repository: fetched only here, when the user names one
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir,
                                            force_download=force_download, local_files_only=local_files_only,
                                            token=token, allow_patterns=[CONFIG, WEIGHTS, LEGACY_WEIGHTS]))
        encoder, metadata = load_exported(folder)
        return cls(encoder, metadata)
