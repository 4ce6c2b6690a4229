"""The seed's learned energy E(s): low on latents of states the world really produces, high on what the world model
imagines off the data (docs/control.md), so a planner with cost d(s, g) + lambda * E(s) avoids plans whose
predicted states are artefacts of the model.

Training (per-sample hinge, not the seed's degenerate batch-mean one): every observed state s^+ of a window is
paired with negatives made from the same window: s^- imagined by the frozen predictor from the window's first
frame under other actions (another window's, or uniform random ones; as many steps as s^+ is from that frame),
and s^+ with its tokens shuffled across positions (the same token values in impossible places). loss = mean_i relu(margin + E(s^+_i) - E(s^-_i)).
AUROC of E (observed vs imagined, observed vs shuffled) is logged on the validation windows.

    jepa fit --config configs/control/two_rooms_energy.yaml         # E on the frozen world model
    jepa fit --config configs/control/two_rooms_joint.yaml          # the seed's joint step: prediction + 0.5 hinge
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from jepa.errors import ConfigError
from jepa_control.mlp import mlp
from jepa_control.on_world_model import OnWorldModel, frame_states_only
from jepa_control.optim import adamw_cosine
from jepa_control.world_model import WorldModel


class Energy(nn.Module):
    """E: latents [B, N, D] (or [B, H, N, D]) -> energies [B] (or [B, H]); an MLP on the flattened tokens."""

    def __init__(self, token_dim: int, num_tokens: int, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        self.mlp = mlp(token_dim * num_tokens, hidden, depth, 1)
        self.token_dim, self.num_tokens = token_dim, num_tokens

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.mlp(latents.flatten(-2)).squeeze(-1)


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """P(E(negative) > E(positive)) over all pairs, ties counted half (the Mann-Whitney form of the ROC area)."""
    scores = torch.cat([positives, negatives]).double()
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique()[torch.unique(scores, return_counts=True)[1] > 1]:  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[n_pos:].sum() - n_neg * (n_neg + 1) / 2) / (n_pos * n_neg))


def shuffle_tokens(latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """[..., N, D] -> the same tokens in a random order per state (a different order for every state)."""
    flat = latents.reshape(-1, *latents.shape[-2:])
    keys = torch.rand(flat.shape[:2], generator=generator, device=latents.device)
    perm = keys.argsort(1)
    return torch.gather(flat, 1, perm[..., None].expand_as(flat)).reshape(latents.shape)


class EnergyModule(OnWorldModel, L.LightningModule):
    """Trains Energy on a world model's latent windows; with `train_predictor` also the predictor (the seed's joint
    step: its teacher-forcing + rollout loss + hinge_weight * hinge, one optimiser).

    Args:
        world_model: the trained world model (a config names it by class_path
            jepa_control.WorldModel.from_checkpoint, jepa_control/on_world_model.py).
        hidden, depth: the energy MLP.
        margin: hinge margin.
        hinge_weight: weight of the hinge in the loss (the seed's joint step: 0.5).
        train_predictor: the joint step; otherwise the world model stays frozen and only E learns.
        negative_actions: the actions of the imagined negatives: "shuffled" (another window's, default) or
            "uniform" in the bounds (on two-rooms E then learned that observed states lie further from the start
            than random-action ones, docs/control.md).
        lr: AdamW learning rate (cosine decay to 0 over max_steps).
        weight_decay: AdamW weight decay.
    """

    checkpoint_kind, checkpoint_keys = "an energy", ("margin", "hinge_weight")

    def __init__(self, world_model: WorldModel, hidden: int = 256, depth: int = 2, margin: float = 1.0,
                 hinge_weight: float = 1.0, train_predictor: bool = False, negative_actions: str = "shuffled",
                 lr: float = 1e-3, weight_decay: float = 0.01) -> None:
        super().__init__()
        if negative_actions not in ("shuffled", "uniform"):
            raise ConfigError(f"model.negative_actions must be 'shuffled' or 'uniform', got {negative_actions!r}")
        if margin <= 0 or hinge_weight <= 0:
            raise ConfigError(f"model.margin and model.hinge_weight must be > 0, got {margin}, {hinge_weight}")
        self.save_hyperparameters(ignore=["world_model"])
        self.wm = world_model
        self.wm.predictor.requires_grad_(train_predictor)
        frame_states_only(self.wm, "the energy")
        enc = self.wm.frozen_encoder
        self.energy = Energy(enc.dim, enc.num_tokens, hidden, depth)

    def negatives(self, latents: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Imagined (other actions from the first frame) and token-shuffled versions of latents[:, 1:]."""
        with torch.no_grad():
            if self.hparams.negative_actions == "uniform":
                random_actions = torch.rand_like(actions) * 2 - 1
            else:  # another window's actions: the data's own action statistics, so E cannot tell by how far they go
                random_actions = actions.roll(1, 0)
            imagined = self.wm.predictor.rollout(latents[:, :1], actions[:, :0], random_actions,
                                                 self.wm.hparams.context)
        return {"imagined": imagined, "shuffled": shuffle_tokens(latents[:, 1:])}

    def hinge(self, latents: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict]:
        pos = self.energy(latents[:, 1:])
        negs = {k: self.energy(v) for k, v in self.negatives(latents, actions).items()}
        loss = sum(F.relu(self.hparams.margin + pos - neg).mean() for neg in negs.values()) / len(negs)
        return loss, {"pos": pos.detach(), **{k: v.detach() for k, v in negs.items()}}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        latents, actions = batch["latents"], batch["actions"]
        hinge, _ = self.hinge(latents, actions)
        loss = self.hparams.hinge_weight * hinge
        logs = {"train/hinge": hinge}
        if self.hparams.train_predictor:
            prediction = self.wm.losses(batch)["loss"]
            loss = loss + prediction
            logs["train/prediction"] = prediction
        self.log_dict(logs, prog_bar=True, batch_size=len(latents))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = {"pos": [], "imagined": [], "shuffled": []}

    def validation_step(self, batch, batch_idx: int) -> None:
        hinge, energies = self.hinge(batch["latents"], batch["actions"])
        for k in self._val:
            self._val[k].append(energies[k].flatten())
        self.log("val/hinge", hinge, batch_size=len(batch["latents"]))

    def on_validation_epoch_end(self) -> None:
        pos = torch.cat(self._val["pos"])
        for k in ("imagined", "shuffled"):
            self.log(f"val/auroc_{k}", auroc(torch.cat(self._val[k]), pos))

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.hparams.lr, self.hparams.weight_decay, self.trainer)
