"""Windows of frozen-encoder latents and actions from collected trajectories, for the world model.

The encoder is frozen, so every frame is encoded once, in one visible step (`prepare(encoder)`, which setup() runs
with the encoder the datamodule was given; cached on disk by eval's FeatureCache, keyed by the encoder's weights,
pooling and data), and training reads windows of latents: no encoder forward per step. The position gate
(jepa_control/gate.py) runs on the same latents before any training, and stops the run when the encoder cannot see
the agent. The training latents are handed to the model that needs statistics of them (`training_latents`, wired
by the jepa CLI), so neither reads the other through the trainer.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import lightning as L
import torch

from jepa.errors import ConfigError
from jepa.io import write_json
from jepa_control.collect import positions, read_trajectories, trajectory_shards
from jepa_control.gate import held_out_r2, position_gate
from jepa_control.windows import EpisodeWindows, WindowLoaders, checked_dirs, same_length


class TrainingLatents:
    """The training set's latents [E, T+1, N, D] and recorded positions [E, T+1, 2], encoded when first read: what
    the datamodule hands the world model to measure its whitening, change scale and position read-out on."""

    def __init__(self, load: Callable[[], dict]) -> None:
        self._load, self._data = load, None

    @property
    def latents(self) -> torch.Tensor:
        return self._read()["latents"]

    @property
    def positions(self) -> torch.Tensor | None:
        return self._read()["positions"]

    def _read(self) -> dict:
        if self._data is None:
            self._data = self._load()
        return self._data


class LatentTrajectoryDataModule(WindowLoaders, L.LightningDataModule):
    """Latent windows of the episodes in train_dir / val_dir, encoded by the model's frozen encoder.

    Args:
        train_dir: trajectory shards of `jepa collect` for training; a list of folders is read as one set (e.g.
            random-policy episodes + episodes of the planner, the act-store-retrain loop); same episode length.
        val_dir: trajectory shards for validation (and the gate's held-out episodes), optional.
        window: frames per training window (>= the model's context + 1 and rollout_history + rollout_steps).
        batch_size: windows per step.
        num_workers: dataloader workers (the data is in memory: 0 is fastest).
        frameskip: env steps per model step (windows.EpisodeWindows: frames this many steps apart, the env actions
            between them concatenated; the model's action_dim is frameskip x the env's).
        gate_min_r2: stop before training when the position probe's R^2 is below this (0: report only).
        cache_dir: where encoded latents are cached (null: no cache).

    The latents come from the model's frozen encoder, handed over before the data is set up: `jepa fit` calls
    use_encoder(model.frozen_encoder) (a world model's, or an actor's or energy's through its world model); in
    Python, call it yourself.
    """

    def __init__(self, train_dir: str | list[str], val_dir: str | None = None, window: int = 6, batch_size: int = 128,
                 num_workers: int = 0, frameskip: int = 1, gate_min_r2: float = 0.9,
                 cache_dir: str | None = "runs/feature_cache") -> None:
        super().__init__()
        self.train_dirs = checked_dirs(train_dir, val_dir)
        self.val_dir, self.window, self.frameskip = val_dir, window, frameskip
        self.batch_size, self.num_workers, self.gate_min_r2, self.cache_dir = batch_size, num_workers, gate_min_r2, cache_dir
        self.encoder = None
        self.train_set = self.val_set = None
        self.gate: dict | None = None
        self.training_latents = TrainingLatents(self._training_data)

    def use_encoder(self, encoder) -> None:
        """Encode with this FrozenEncoder (a model's own: one copy of the weights, read once)."""
        self.encoder = encoder

    def _training_data(self) -> dict:
        self.setup()
        f = self.frameskip  # the model's statistics (its change scale) are of changes over one model step
        return {"latents": self.train_set.values[:, ::f], "positions": self.train_set.positions[:, ::f]}

    def encode_dir(self, encoder, path: str) -> dict:
        """Latents (fp32: one step's change is often below fp16's resolution, ~1e-3 at unit scale) and actions of
        every episode of a folder, through the feature cache."""
        from eval.feature_cache import FeatureCache

        data = read_trajectories(path)
        files = trajectory_shards(path)
        spec = {"kind": "world_model_latents", "encoder": encoder.source_digest, "pool_grid": encoder.pool_grid,
                "fold": encoder.fold,
                "mean": encoder.mean.flatten().tolist(), "std": encoder.std.flatten().tolist(),
                "data": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]}
        cache = FeatureCache(self.cache_dir, torch.float32)
        latents = cache.get_or_compute(spec, lambda: encoder(data["frames"]))
        out = {"latents": latents, "actions": data["actions"].float(), "positions": positions(data["proprio"]).float()}
        return out if data["state"] is None else {**out, "state": data["state"].float()}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.encoder is None:
            raise ConfigError("LatentTrajectoryDataModule has no encoder: `jepa fit` hands it the model's (a "
                              "jepa_control WorldModel's, actor's or energy's); in Python call "
                              "use_encoder(model.frozen_encoder)")
        self.prepare(self.encoder)

    def prepare(self, encoder) -> None:
        """Encode the data with `encoder` (a FrozenEncoder) and run the gate."""
        parts = [self.encode_dir(encoder, d) for d in self.train_dirs]
        same_length(parts)
        train = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if all(k in p for p in parts)}
        val = self.encode_dir(encoder, self.val_dir) if self.val_dir else None
        if val is not None:  # fit on training episodes, score on held-out ones
            self.gate = held_out_r2(train["latents"], train["positions"], val["latents"], val["positions"], 6000,
                                    3000, torch.Generator().manual_seed(0))
        else:
            self.gate = position_gate(train["latents"], train["positions"])
        self.gate["min_r2"] = self.gate_min_r2
        print(f"position gate: linear probe of the agent's (x, y) from frozen latents, R^2 = {self.gate['r2']:.3f} "
              f"on held-out episodes (need >= {self.gate_min_r2})", file=sys.stderr)
        if self.trainer is not None and self.trainer.is_global_zero:
            write_json(Path(self.trainer.default_root_dir) / "gate.json", self.gate)
        if self.gate_min_r2 > 0 and self.gate["r2"] < self.gate_min_r2:  # 0: report only
            raise ConfigError(f"position gate failed: R^2 = {self.gate['r2']:.3f} < {self.gate_min_r2}; the frozen "
                              "encoder does not see the agent well enough to plan with (train it longer, pool less, "
                              "or set data.gate_min_r2 0 to go on anyway)")
        self.train_set = EpisodeWindows("latents", train["latents"].float(), train["actions"], self.window,
                                        train["positions"], self.frameskip, train.get("state"))
        self.val_set = (EpisodeWindows("latents", val["latents"].float(), val["actions"], self.window,
                                       val["positions"], self.frameskip, val.get("state"))
                        if val is not None else None)
