"""JEPAModule: the LightningModule that I-JEPA and V-JEPA specialise.

It owns what every JEPA shares: context encoder, EMA target encoder, predictor, AdamW with no weight decay on
biases and 1-D parameters, the schedules (in optimizer steps), the EMA update after each optimizer step,
per-step mask keys and the collapse monitors. A subclass builds the networks and defines `jepa_loss`.
"""
from __future__ import annotations

import copy
import random
import warnings

import lightning as L
import numpy as np
import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.distributed.tensor import DTensor

from jepa.attention import avoid_cudnn_attention
from jepa.ema import ema_update
from jepa.errors import ConfigError
from jepa.metrics import feature_std, rankme
from jepa.schedules import JEPASchedule, linear
from jepa.seeding import key_seed
from jepa.sharding import shard_jepa
from jepa.sigreg import sigreg
from jepa.vit import context_and_predictions


def check_model_args(sigreg_weight: float, sigreg_slices: int, predictor_embed_dim: int, num_heads: int) -> None:
    """The settings every JEPA module takes, checked before anything is built so the error names the config key."""
    if sigreg_weight < 0 or sigreg_slices < 1:
        raise ConfigError(f"model.sigreg_weight must be >= 0 and model.sigreg_slices >= 1, got {sigreg_weight} and "
                          f"{sigreg_slices}")
    if predictor_embed_dim % num_heads:
        raise ConfigError(f"model.predictor_embed_dim {predictor_embed_dim} must be divisible by model.num_heads "
                          f"{num_heads} (the predictor uses the encoder's head count)")


def compile_networks(*networks: nn.Module) -> None:
    """torch.compile every transformer block of the networks in place (regional compilation: nn.Module.compile keeps
    parameter names and checkpoints as they are; all blocks of one width share a graph, so compiling takes seconds
    per shape instead of minutes per network, and the rest, patch embedding and gathers, stays eager).

    Shapes are static (dynamic=False: torch 2.11's inductor failed on dynamic token counts on CUDA, README
    "Performance"), so each new token count is a new graph: with the paper's masks nearly every batch, unless
    model.pad_tokens rounds the counts to a few sizes. The recompile limit is raised so that those few all fit."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), 64))
    for network in networks:
        for module in network.modules():
            if isinstance(module, Block):
                module.compile(dynamic=False)


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss or gradient; the message says what to do."""


def mask_key(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed from (seed, step, rank): any loader, any worker count, and resume give the same masks."""
    return key_seed(seed, step, rank)


class JEPAModule(L.LightningModule):
    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        lr: float = 1e-3,
        start_lr: float = 2e-4,
        final_lr: float = 1e-6,
        warmup_fraction: float = 40 / 300,
        weight_decay: float = 0.04,
        final_weight_decay: float = 0.4,
        ema_momentum: tuple[float, float] = (0.996, 1.0),
        betas: tuple[float, float] = (0.9, 0.999),
        mask_seed: int = 0,
        monitor_every: int = 50,
        max_nonfinite_steps: int = 5,
        pad_tokens: int = 0,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        if pad_tokens < 0:
            raise ConfigError(f"model.pad_tokens must be >= 0 (0: no padding), got {pad_tokens}")
        if max_nonfinite_steps < 0:
            raise ConfigError(f"model.max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ConfigError(f"model.warmup_fraction must be in [0, 1), got {warmup_fraction}")
        for name, value in (("lr", lr), ("start_lr", start_lr), ("final_lr", final_lr)):
            if value < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {value}")
        if not all(0.0 <= m <= 1.0 for m in ema_momentum):
            raise ConfigError(f"model.ema_momentum must lie in [0, 1], got {list(ema_momentum)}")
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.lr, self.start_lr, self.final_lr, self.warmup_fraction = lr, start_lr, final_lr, warmup_fraction
        self.weight_decay, self.final_weight_decay = weight_decay, final_weight_decay
        self.ema_momentum, self.betas = tuple(ema_momentum), tuple(betas)
        self.mask_seed, self.monitor_every = mask_seed, monitor_every
        self.max_nonfinite_steps = max_nonfinite_steps
        self.pad_tokens, self.torch_compile = pad_tokens, torch_compile
        self.nonfinite_in_a_row = 0  # consecutive skipped steps
        self.nonfinite_total = 0
        self._skip_step = False

    # ---- to be defined by the subclass -------------------------------------------------------------------------
    def sample_masks(self, batch, generator: torch.Generator):
        """Masks for one batch, drawn from `generator` (already keyed by seed, step and rank)."""
        raise NotImplementedError

    def jepa_loss(self, batch, masks) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, target-encoder tokens [B, N, D] of the full input, for the monitors)."""
        raise NotImplementedError

    # ---- masks: drawn on the device, keyed by (seed, micro-step, rank) -------------------------------------------
    @staticmethod
    def images(batch) -> torch.Tensor:
        """The input tensor of a batch that is either a tensor or (inputs, labels, ...)."""
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    def masks_for(self, batch, step: int, rank: int):
        device = self.images(batch).device
        generator = torch.Generator(device=device)
        generator.manual_seed(mask_key(self.mask_seed, step, rank))
        return self.sample_masks(batch, generator)

    def micro_step(self, batch_idx: int) -> int:
        """Counts micro-batches: optimizer step x accumulation + position inside the accumulation window."""
        accumulate = self.trainer.accumulate_grad_batches
        return self.trainer.global_step * accumulate + batch_idx % accumulate

    # ---- steps --------------------------------------------------------------------------------------------------
    def add_sigreg(self, loss: torch.Tensor, context_tokens: list[torch.Tensor]) -> torch.Tensor:
        """loss + hparams.sigreg_weight x SIGReg (LeJEPA) of the context encoder's average-pooled embeddings,
        averaged over `context_tokens` (one [B, N, D] per mask configuration); directions keyed by (mask_seed,
        step), the same on every rank. A weight of 0 (the papers' recipes) returns the loss unchanged."""
        weight = self.hparams.get("sigreg_weight", 0.0)
        if weight <= 0:
            return loss
        step = self.trainer.global_step if self._trainer is not None else 0
        key, reg = key_seed(self.mask_seed, step, 0x5167), 0.0
        for z in context_tokens:  # the same directions for every configuration
            reg = reg + sigreg(z.mean(1), self.hparams.sigreg_slices, torch.Generator().manual_seed(key))
        reg = reg / len(context_tokens)
        if self._trainer is not None and self.training:
            self.log("train/sigreg", reg)
        return loss + weight * reg

    def training_step(self, batch, batch_idx: int):
        masks = self.masks_for(batch, self.micro_step(batch_idx), self.global_rank)
        loss, target_tokens = self.jepa_loss(batch, masks)
        if not self.all_ranks_finite(loss.detach()):
            self.note_nonfinite("loss")
            # A zero loss with zero gradients keeps DDP's gradient all-reduce in step (Lightning refuses a None
            # there); on_before_optimizer_step then drops the gradients so AdamW leaves every weight alone.
            return sum(p.reshape(-1)[0] for p in self.parameters() if p.requires_grad) * 0.0
        self.log("train/loss", loss, prog_bar=True)
        step = self.trainer.global_step
        if self.monitor_every and step % self.monitor_every == 0:
            pooled = target_tokens.detach().float().mean(dim=1)
            self.log("train/target_std", feature_std(pooled))
            self.log("train/rankme", rankme(pooled, center=True))
            self.log("train/ema_momentum", self.momentum_at(step))
            self.log("train/weight_decay", self.optimizers().param_groups[0]["weight_decay"])
        return loss

    def validation_step(self, batch, batch_idx: int):
        # Validation masks are keyed by the batch index only, so every validation pass scores the same masks.
        loss, _ = self.jepa_loss(batch, self.masks_for(batch, batch_idx, rank=1 << 20))
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        return loss

    def context_and_predictions(self, x: torch.Tensor, context: torch.Tensor, targets, mask_index: int = 0):
        """Context-encoder tokens and predictions (jepa.vit.context_and_predictions), padded to model.pad_tokens."""
        return context_and_predictions(self.encoder, self.predictor, x, context, targets, self.pad_tokens, mask_index)

    def on_fit_start(self) -> None:
        avoid_cudnn_attention(self.device)  # mask lengths change every batch (jepa/attention.py)
        if self.torch_compile:
            if not self.pad_tokens:
                warnings.warn("model.torch_compile without model.pad_tokens compiles a new graph for every new token "
                              "count, nearly every batch at 224 px: set model.pad_tokens (e.g. 16)", stacklevel=2)
            compile_networks(self.encoder, self.target_encoder, self.predictor)

    def on_train_start(self) -> None:
        t = self.trainer
        loader = t.train_dataloader
        per_device = getattr(loader, "batch_size", None) if loader is not None else None
        if per_device:
            global_batch = per_device * t.world_size * t.accumulate_grad_batches
            self.log("train/global_batch", float(global_batch), rank_zero_only=True)
            if t.is_global_zero:
                print(
                    f"global batch {global_batch} = {per_device} per device x {t.world_size} processes x "
                    f"{t.accumulate_grad_batches} accumulation (no automatic LR scaling)"
                )

    # ---- FSDP2: under ModelParallelStrategy Lightning hands over a device mesh; otherwise nothing to do ----------
    def configure_model(self) -> None:
        mesh = self._device_mesh
        if mesh is None:
            return
        if mesh["tensor_parallel"].size() != 1:
            raise ConfigError("JEPA modules shard over data parallelism only: set the strategy's tensor_parallel_size=1")
        shard_jepa(self.encoder, self.target_encoder, self.predictor, mesh["data_parallel"])

    # ---- optimiser, schedules, EMA --------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        total = self.trainer.estimated_stepping_batches
        if total is None or total == float("inf"):
            raise ConfigError("training length is unknown: set trainer.max_steps or trainer.max_epochs")
        return int(total)

    def momentum_at(self, step: int) -> float:
        return linear(step, self.total_steps, *self.ema_momentum)

    def param_groups(self) -> list[dict]:
        decay, no_decay = [], []
        for module in (self.encoder, self.predictor):
            for name, p in module.named_parameters():
                if p.requires_grad:
                    (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        total = self.total_steps
        schedule = JEPASchedule(
            optimizer,
            total_steps=total,
            warmup_steps=int(round(self.warmup_fraction * total)),
            start_lr=self.start_lr,
            lr=self.lr,
            final_lr=self.final_lr,
            weight_decay=self.weight_decay,
            final_weight_decay=self.final_weight_decay,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        step = self.trainer.global_step  # optimizer steps taken before this one
        self._skip_step = False
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._skip_step:
            return  # a non-finite loss or gradient: weights, optimizer state and EMA stay as they were
        self.nonfinite_in_a_row = 0
        ema_update(self.target_encoder, self.encoder, self.momentum_at(step))

    # ---- non-finite losses and gradients --------------------------------------------------------------------------
    def all_ranks_finite(self, value: torch.Tensor) -> bool:
        """Whether value is finite on every rank (so all ranks skip together and DDP never waits on one)."""
        return not self.any_rank((~torch.isfinite(value)).any())

    def any_rank(self, flag: torch.Tensor) -> bool:
        """Whether a boolean flag is set on some rank (every rank gets the same answer)."""
        flag = flag.float()
        if self.trainer is not None and self.trainer.world_size > 1:
            flag = self.trainer.strategy.reduce(flag, reduce_op="max")
        return bool(flag)

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not self._skip_step and grads:
            sharded = isinstance(grads[0], DTensor)  # FSDP: each rank checks its shard, then all ranks agree
            bad = ~torch.stack([torch.isfinite(g.to_local() if sharded else g).all() for g in grads]).all()
            if self.any_rank(bad) if sharded else bool(bad):
                self.note_nonfinite("gradient")  # DDP gradients are already reduced: every rank agrees
        if self._skip_step:
            optimizer.zero_grad(set_to_none=True)  # AdamW skips parameters without gradients

    def note_nonfinite(self, what: str) -> None:
        self._skip_step = True
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        step = self.trainer.global_step if self.trainer is not None else -1
        if self.trainer is None or self.trainer.is_global_zero:
            warnings.warn(f"step {step}: non-finite {what}, step skipped ({self.nonfinite_in_a_row} in a row, "
                          f"{self.nonfinite_total} in all)", stacklevel=2)
        if self.nonfinite_in_a_row > self.max_nonfinite_steps:
            raise NonFiniteTrainingError(
                f"non-finite {what} for {self.nonfinite_in_a_row} steps in a row (up to step {step}), more than "
                f"model.max_nonfinite_steps={self.max_nonfinite_steps}: training stopped; the last checkpoint holds "
                "finite weights. Lower model.lr, check the data, or resume from an earlier checkpoint")

    # ---- checkpoints carry the random states, so a resumed run draws what the uninterrupted one would -----------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # as tensors and ints, so the checkpoint still loads with torch.load(weights_only=True)
        _, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss_next],
            "nonfinite_total": self.nonfinite_total,
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal.tolist()), gauss_next))
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        self.nonfinite_total = int(states.get("nonfinite_total", 0))
