"""Embeddings of a frozen encoder for every sample of a dataset, written through Lightning's prediction loop and a
BasePredictionWriter: one file per batch and rank (so memory stays flat on any dataset size), then an index.

    <out>/batches/r{rank}-{batch:06d}.pt   {"ids": [str], "pooled": [B, D], "tokens": [B, N, D] (unless off)}
    <out>/index.json                       files, sample count, shapes, encoder, data, provenance

Read them back with read_embeddings(out). Files load with torch.load(weights_only=True).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jepa.io import atomic_write, write_json


class EmbeddingModule(L.LightningModule):
    """predict_step: (inputs, ids) -> {"ids", "pooled" (token average), "tokens"}."""

    def __init__(self, encoder: nn.Module, tokens: bool = True) -> None:
        super().__init__()
        self.encoder, self.tokens = encoder.eval().requires_grad_(False), tokens

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        inputs, ids = batch[0], batch[1]
        tokens = self.encoder(inputs)
        out = {"ids": [str(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)],
               "pooled": tokens.mean(dim=1).float().cpu()}
        if self.tokens:
            out["tokens"] = tokens.float().cpu()
        return out


class EmbeddingWriter(BasePredictionWriter):
    """Writes each batch's embeddings as it comes (atomically), then the index on rank 0."""

    def __init__(self, out: str | os.PathLike, metadata: dict) -> None:
        super().__init__(write_interval="batch")
        self.out, self.metadata, self.files, self.count = Path(out), metadata, [], 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        name = f"batches/r{trainer.global_rank}-{batch_idx:06d}.pt"
        atomic_write(self.out / name, lambda tmp: torch.save(prediction, tmp))
        self.files.append(name)
        self.count += len(prediction["ids"])

    def on_predict_end(self, trainer, pl_module) -> None:
        write_json(self.out / "batches" / f"r{trainer.global_rank}.json", {"files": self.files, "samples": self.count})
        trainer.strategy.barrier()  # every rank's list is on disk before rank 0 reads them
        if trainer.is_global_zero:
            ranks = [json.loads(f.read_text()) for f in sorted((self.out / "batches").glob("r*.json"))]
            write_json(self.out / "index.json", {**self.metadata, "files": sorted(f for r in ranks for f in r["files"]),
                                                 "samples": sum(r["samples"] for r in ranks)})


def read_embeddings(out: str | os.PathLike) -> dict:
    """{"ids": [str], "pooled": [N, D], "tokens": [N, T, D] or None} from a `jepa predict` folder."""
    out = Path(out)
    index = json.loads((out / "index.json").read_text())
    parts = [torch.load(out / f, map_location="cpu", weights_only=True) for f in index["files"]]
    ids = [i for p in parts for i in p["ids"]]
    tokens = torch.cat([p["tokens"] for p in parts]) if parts and "tokens" in parts[0] else None
    return {"ids": ids, "pooled": torch.cat([p["pooled"] for p in parts]), "tokens": tokens, "index": index}


class IdDataset(Dataset):
    """(input, id) pairs: a map-style dataset's first element with the id `ids[i]`."""

    def __init__(self, base: Dataset, ids) -> None:
        self.base, self.ids = base, ids

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return self.base[i][0], self.ids[i]


def loader(dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
