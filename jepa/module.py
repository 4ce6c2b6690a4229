"""JEPA: the LightningModule of I-JEPA and V-JEPA, with the whole training step readable in `jepa_loss` below.

A model is composed of parts: an encoder (its EMA copy is the target encoder), a predictor, a mask sampler, an input
adapter (batch -> the encoder's input tensor, checked) and an objective (prediction vs target distance).
ijepa.IJEPA and vjepa.VJEPA only build those parts; everything about training lives here: AdamW with the shared
parameter groups (jepa.optim), the LR / weight-decay / EMA schedules in optimizer steps, the EMA update after each
optimizer step, masks keyed by (seed, micro-step, rank), the optional SIGReg term, the non-finite guard
(jepa.nonfinite), random states in checkpoints (jepa.rng_state) and the collapse monitors.

The mask sampler's protocol: sampler(batch_size, encoder.token_grid, generator) returns one mask configuration or a
list of them; each has `.context` [B, Kc] and `.targets`, a sequence of [B, Kt] token-index tensors.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from jepa.attention import avoid_cudnn_attention
from jepa.compile import compile_networks
from jepa.ema import ema_update
from jepa.errors import ConfigError
from jepa.masking import apply_masks, slot_means
from jepa.metrics import feature_std, rankme
from jepa.nonfinite import NonFiniteGuard, NonFiniteTrainingError
from jepa.optim import decay_groups
from jepa.rng_state import capture_rng_states, restore_rng_states
from jepa.schedules import JEPASchedule, linear
from jepa.seeding import key_seed
from jepa.sharding import shard_jepa
from jepa.sigreg import sigreg
from jepa.vit import context_and_predictions

__all__ = ["JEPA", "NonFiniteTrainingError", "batch_inputs", "check_predictor_width", "mask_key"]

VALIDATION_RANK = 1 << 20  # validation masks get their own key space, disjoint from every training rank's


def check_predictor_width(predictor_embed_dim: int, num_heads: int) -> None:
    """Checked before the predictor is built, so the error names the config keys."""
    if predictor_embed_dim % num_heads:
        raise ConfigError(f"model.predictor_embed_dim {predictor_embed_dim} must be divisible by model.num_heads "
                          f"{num_heads} (the predictor uses the encoder's head count)")


def mask_key(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed from (seed, step, rank): any loader, any worker count, and resume give the same masks."""
    return key_seed(seed, step, rank)


def batch_inputs(batch) -> torch.Tensor:
    """The input tensor of a batch that is either a tensor or (inputs, labels, ...)."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class JEPA(L.LightningModule):
    """The JEPA training module. Its parts are built by ijepa.IJEPA / vjepa.VJEPA; the options below are theirs too.

    Args:
        encoder: the context encoder (a jepa.vit.VisionTransformer); the target encoder is its EMA copy.
        predictor: predicts target tokens from context tokens (jepa.vit.Predictor).
        mask_sampler: draws the masks of a batch (protocol in the module docstring).
        inputs: batch -> the encoder's input tensor, raising ConfigError when its shape does not fit the model.
        objective: loss(prediction, target) of one mask configuration; configurations are averaged.
        lr: peak learning rate, reached after warmup.
        start_lr: learning rate at step 0.
        final_lr: learning rate at the end of the cosine.
        warmup_fraction: fraction of the optimizer steps spent in linear warmup.
        weight_decay: weight decay at step 0 (cosine schedule; never on biases or 1-D parameters).
        final_weight_decay: weight decay at the last step.
        ema_momentum: target-encoder EMA momentum, linear from the first to the second value over training.
        betas: AdamW betas.
        mask_seed: seed of the mask generator; masks are keyed by (mask_seed, micro-step, rank).
        monitor_every: log RankMe and target-feature std every this many optimizer steps (0: never).
        max_nonfinite_steps: skip a step whose loss or gradient is NaN/inf (no weight or EMA update); stop with
            an error after this many such steps in a row.
        sigreg_weight: add this times SIGReg (LeJEPA) of the context encoder's average-pooled embeddings to the
            loss, averaged over mask configurations (0: off, the papers' recipes). Directions keyed by
            (mask_seed, step), the same on every rank.
        sigreg_slices: random directions of SIGReg.
        sigreg_pool: what SIGReg treats as one sample: `input` (a clip's or image's context tokens averaged) or `time`
            (a clip's context tokens averaged within each time slot, so a clip gives one sample per slot; the same as
            `input` for images). Per time slot, the samples of a clip differ where the clip changes (where a moving
            object is), as the frame-wise I-JEPA baseline's frames do, instead of averaging that motion away.
        pooled_weight: add this times the objective between each context's average-pooled embedding and the target
            encoder's average-pooled embedding of the whole input, both layer-normed (0: off, the papers' recipes):
            the pooled features, which the standard probe reads, learn to agree across masked views.
        pad_tokens: round each batch's context and target token counts up to a multiple of this (0: off); the
            padding is masked out of attention and cut from the outputs, so the loss and gradients are the same,
            but the networks see a few tensor shapes instead of one per mask size (what torch_compile needs).
        torch_compile: torch.compile every transformer block when fitting starts (static shapes, one graph per token
            count: use it with pad_tokens, e.g. 16 at 224 px; meant for GPUs, slower on 2 CPU cores:
            docs/performance.md).
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        mask_sampler: Callable,
        inputs: Callable[[object], torch.Tensor],
        objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
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
        sigreg_weight: float = 0.0,
        sigreg_slices: int = 256,
        sigreg_pool: str = "input",
        pooled_weight: float = 0.0,
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
        if sigreg_weight < 0 or sigreg_slices < 1:
            raise ConfigError(f"model.sigreg_weight must be >= 0 and model.sigreg_slices >= 1, got {sigreg_weight} and "
                              f"{sigreg_slices}")
        if sigreg_pool not in ("input", "time"):
            raise ConfigError(f"model.sigreg_pool must be 'input' or 'time', got {sigreg_pool!r}")
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.mask_sampler, self.inputs, self.objective = mask_sampler, inputs, objective
        self.lr, self.start_lr, self.final_lr, self.warmup_fraction = lr, start_lr, final_lr, warmup_fraction
        self.weight_decay, self.final_weight_decay = weight_decay, final_weight_decay
        self.ema_momentum, self.betas = tuple(ema_momentum), tuple(betas)
        self.mask_seed, self.monitor_every = mask_seed, monitor_every
        if pooled_weight < 0:
            raise ConfigError(f"model.pooled_weight must be >= 0 (0: off), got {pooled_weight}")
        self.sigreg_weight, self.sigreg_slices, self.pooled_weight = sigreg_weight, sigreg_slices, pooled_weight
        self.sigreg_pool = sigreg_pool
        self.pad_tokens, self.torch_compile = pad_tokens, torch_compile
        self.nonfinite = NonFiniteGuard(max_nonfinite_steps)

    # ---- the JEPA step ------------------------------------------------------------------------------------------
    def jepa_loss(self, batch, masks) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, target-encoder tokens [B, N, D] of the whole input, for the monitors)."""
        x = self.inputs(batch)
        with torch.no_grad():  # targets: the EMA encoder's layer-normed tokens of the whole input
            full = self.target_encoder(x)
            h = F.layer_norm(full, (full.size(-1),))
        losses, contexts, context_indices = [], [], []
        for i, config in enumerate(masks if isinstance(masks, (list, tuple)) else [masks]):
            targets = list(config.targets)
            # the context encoder sees only the context tokens; the predictor fills in each target block
            z, pred = context_and_predictions(self.encoder, self.predictor, x, config.context, targets,
                                              self.pad_tokens, i)
            losses.append(self.objective(pred.float(), apply_masks(h, targets).float()))
            contexts.append(z)
            context_indices.append(config.context)
        loss = torch.stack(losses).mean()
        if self.sigreg_weight > 0:  # against collapse: the pooled context embeddings pushed towards isotropy
            loss = loss + self.sigreg_weight * self.sigreg_term(contexts, context_indices)
        if self.pooled_weight > 0:  # each masked view's pooled embedding predicts the whole input's
            loss = loss + self.pooled_weight * self.pooled_term(contexts, h)
        return loss, full

    def training_step(self, batch, batch_idx: int):
        masks = self.masks_for(batch, self.micro_step(batch_idx), self.global_rank)
        loss, target_tokens = self.jepa_loss(batch, masks)
        if self.nonfinite.loss_is_bad(loss, self._trainer):
            # A zero loss with zero gradients keeps DDP's gradient all-reduce in step (Lightning refuses a None
            # there); the guard then drops the gradients so AdamW leaves every weight alone.
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

    def on_before_optimizer_step(self, optimizer) -> None:
        self.nonfinite.check_gradients(optimizer, self._trainer)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        step = self.trainer.global_step  # optimizer steps taken before this one
        self.nonfinite.skip = False
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.nonfinite.skip:
            return  # a non-finite loss or gradient: weights, optimizer state and EMA stay as they were
        self.nonfinite.step_taken()
        ema_update(self.target_encoder, self.encoder, self.momentum_at(step))

    def validation_step(self, batch, batch_idx: int):
        # Validation masks are keyed by the batch index only, so every validation pass scores the same masks.
        loss, _ = self.jepa_loss(batch, self.masks_for(batch, batch_idx, rank=VALIDATION_RANK))
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        return loss

    # ---- masks: drawn on the device, keyed by (seed, micro-step, rank) -------------------------------------------
    def sample_masks(self, batch, generator: torch.Generator):
        x = self.inputs(batch)
        return self.mask_sampler(x.shape[0], self.encoder.token_grid, generator)

    def masks_for(self, batch, step: int, rank: int):
        generator = torch.Generator(device=self.inputs(batch).device)
        generator.manual_seed(mask_key(self.mask_seed, step, rank))
        return self.sample_masks(batch, generator)

    def micro_step(self, batch_idx: int) -> int:
        """Counts micro-batches: optimizer step x accumulation + position inside the accumulation window."""
        accumulate = self.trainer.accumulate_grad_batches
        return self.trainer.global_step * accumulate + batch_idx % accumulate

    def sigreg_term(self, contexts: list[torch.Tensor], indices: list[torch.Tensor]) -> torch.Tensor:
        """SIGReg of the average-pooled context embeddings (per input or per time slot: sigreg_pool), averaged over
        mask configurations; the directions are keyed by (mask_seed, step), the same for every configuration and
        rank."""
        step = self.trainer.global_step if self._trainer is not None else 0
        key, reg = key_seed(self.mask_seed, step, 0x5167), 0.0
        grid = self.encoder.token_grid
        for z, index in zip(contexts, indices):
            if self.sigreg_pool == "time" and len(grid) == 3:
                samples = slot_means(z, index, grid[1] * grid[2], grid[0])
            else:
                samples = z.mean(1)
            reg = reg + sigreg(samples, self.sigreg_slices, torch.Generator().manual_seed(key))
        reg = reg / len(contexts)
        if self._trainer is not None and self.training:
            self.log("train/sigreg", reg)
        return reg

    def pooled_term(self, contexts: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """The objective between each context's pooled, layer-normed embedding and the whole input's pooled target
        (the mean of the layer-normed target tokens, layer-normed again), averaged over mask configurations."""
        target = F.layer_norm(h.float().mean(1), (h.size(-1),))
        term = torch.stack([self.objective(F.layer_norm(z.float().mean(1), (z.size(-1),)), target)
                            for z in contexts]).mean()
        if self._trainer is not None and self.training:
            self.log("train/pooled", term)
        return term

    # ---- optimiser and schedules (in optimizer steps) ---------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        total = self.trainer.estimated_stepping_batches
        if total is None or total == float("inf"):
            raise ConfigError("training length is unknown: set trainer.max_steps or trainer.max_epochs")
        return int(total)

    def momentum_at(self, step: int) -> float:
        return linear(step, self.total_steps, *self.ema_momentum)

    def param_groups(self) -> list[dict]:
        """Every trainable parameter (encoder, predictor, and any head a subclass adds); the EMA target is frozen."""
        return decay_groups(self.parameters())

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        total = self.total_steps
        schedule = JEPASchedule(
            optimizer, total_steps=total, warmup_steps=int(round(self.warmup_fraction * total)),
            start_lr=self.start_lr, lr=self.lr, final_lr=self.final_lr,
            weight_decay=self.weight_decay, final_weight_decay=self.final_weight_decay,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    # ---- fitting starts: attention backend, compilation, FSDP2, the global batch -----------------------------------
    def on_fit_start(self) -> None:
        avoid_cudnn_attention(self.device)  # mask lengths change every batch (jepa/attention.py)
        if self.torch_compile:
            if not self.pad_tokens:
                warnings.warn("model.torch_compile without model.pad_tokens compiles a new graph for every new token "
                              "count, nearly every batch at 224 px: set model.pad_tokens (e.g. 16)", stacklevel=2)
            compile_networks(self.encoder, self.target_encoder, self.predictor)

    def configure_model(self) -> None:
        mesh = self._device_mesh  # set by Lightning's ModelParallelStrategy (FSDP2) only
        if mesh is None:
            return
        if mesh["tensor_parallel"].size() != 1:
            raise ConfigError("JEPA modules shard over data parallelism only: set the strategy's tensor_parallel_size=1")
        shard_jepa(self.encoder, self.target_encoder, self.predictor, mesh["data_parallel"])

    def on_train_start(self) -> None:
        t = self.trainer
        loader = t.train_dataloader
        per_device = getattr(loader, "batch_size", None) if loader is not None else None
        if per_device:
            global_batch = per_device * t.world_size * t.accumulate_grad_batches
            self.log("train/global_batch", float(global_batch), rank_zero_only=True)
            if t.is_global_zero:
                print(f"global batch {global_batch} = {per_device} per device x {t.world_size} processes x "
                      f"{t.accumulate_grad_batches} accumulation (no automatic LR scaling)")

    # ---- checkpoints carry the random states, so a resumed run draws what the uninterrupted one would -----------
    @property
    def nonfinite_total(self) -> int:
        return self.nonfinite.total

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {**capture_rng_states(), "nonfinite_total": self.nonfinite.total}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            restore_rng_states(states)
            self.nonfinite.total = int(states.get("nonfinite_total", 0))
