"""Action-conditioned world model on frozen-encoder latents: s_{t+1} = P(s_{<=t}, a_{<=t}).

A transformer over frames: each frame contributes its (pooled, layer-normed) patch tokens plus one action token,
attention is block-causal (every token of frame t sees all tokens of frames <= t and none of t+1), and the patch
outputs of frame t predict the latents of frame t+1. Trained with teacher forcing plus a multi-step rollout loss
(the model's own predictions fed back), both L1 on layer-normed targets (V-JEPA 2-AC).
"""
from __future__ import annotations

import inspect
import math

import lightning as L
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from jepa_control.frames import TWO_ROOMS_MEAN, TWO_ROOMS_STD
from jepa.errors import ConfigError
from jepa.optim import decay_groups
from jepa.pos_embed import sincos_1d

LATENT_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def block_causal_mask(frames: int, tokens_per_frame: int) -> torch.Tensor:
    """bool [F*M, F*M], True where attention is allowed: query frame >= key frame."""
    frame = torch.arange(frames * tokens_per_frame) // tokens_per_frame
    return frame[:, None] >= frame[None, :]


class ActionConditionedPredictor(nn.Module):
    """latents [B, T, N, D] and actions [B, T, A] (action t leads from frame t to t+1) -> predicted latents of
    frames 1..T: [B, T, N, D], as latents + a predicted change (the output layer starts at zero, so an untrained
    model predicts "nothing moves", the baseline it must beat).

    motion: each frame's input also carries its change since the previous frame (zero for a window's first frame),
    and the output is the next change, both in units of `change_scale` (per channel; WorldModel sets it to the
    training latents' one-step change std): where a step moves the latents by ~1e-3 of their scale, the change
    is otherwise invisible next to the latents themselves.
    whiten: the predictor works in PCA-whitened coordinates of the tokens, (z - latent_mean) @ whitener, and its
    predicted change is mapped back with unwhitener (WorldModel measures them on the training latents): where
    what moves lives in directions holding a thousandth of the variance (PointMaze's ball; the static maze holds
    the rest), a learned input layer on the raw tokens does not find it."""

    def __init__(self, token_dim: int, num_tokens: int, action_dim: int, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, max_frames: int = 32, motion: bool = False, whiten: bool = False) -> None:
        super().__init__()
        self.token_dim, self.num_tokens, self.action_dim, self.max_frames = token_dim, num_tokens, action_dim, max_frames
        self.latent_in = nn.Linear(token_dim, embed_dim)
        self.motion_in = nn.Linear(token_dim, embed_dim) if motion else None
        if motion:
            self.register_buffer("change_scale", torch.ones(token_dim))
        self.whiten = whiten
        if whiten:
            self.register_buffer("latent_mean", torch.zeros(token_dim))
            self.register_buffer("whitener", torch.eye(token_dim))
            self.register_buffer("unwhitener", torch.eye(token_dim))
        self.action_in = nn.Linear(action_dim, embed_dim)
        self.slot_pos = nn.Parameter(torch.zeros(1, 1, num_tokens + 1, embed_dim))  # action slot + patch slots
        nn.init.trunc_normal_(self.slot_pos, std=0.02)
        self.register_buffer("time_pos", sincos_1d(embed_dim, torch.arange(max_frames, dtype=torch.float64))[None, :, None],
                             persistent=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(embed_dim, token_dim)
        nn.init.zeros_(self.out.weight)  # predicts the change of each latent: starts as "nothing moves"
        nn.init.zeros_(self.out.bias)

    def io_weights(self) -> tuple[torch.Tensor, ...]:
        """The input, motion and output layers with the whitening and the change scale folded in (exactly the same
        maps as applying them one after the other): per token an E x D matmul each instead of D x D ones more
        (1.5x faster rollouts at D = 512). Computed once per forward or rollout, so gradients flow as unfolded."""
        w_in, b_in = self.latent_in.weight, self.latent_in.bias
        w_out, b_out = self.out.weight, self.out.bias
        w_motion = b_motion = None
        if self.motion_in is not None:
            scale = self.change_scale
            w_motion, b_motion = self.motion_in.weight / scale, self.motion_in.bias
            w_out, b_out = w_out * scale[:, None], b_out * scale
        if self.whiten:
            w_in = w_in @ self.whitener.T
            b_in = b_in - w_in @ self.latent_mean
            w_motion = w_motion @ self.whitener.T if w_motion is not None else None
            w_out, b_out = self.unwhitener.T @ w_out, b_out @ self.unwhitener
        return w_in, b_in, w_motion, b_motion, w_out, b_out

    def forward(self, latents: torch.Tensor, actions: torch.Tensor, last_only: bool = False,
                io: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """last_only: predict only the frame after the last one ([B, 1, N, D]; what a rollout step needs).
        io: io_weights(), when the caller computes them once for many calls."""
        b, t, n, _ = latents.shape
        if t > self.max_frames:
            raise ConfigError(f"world model takes at most {self.max_frames} frames, got {t}")
        if actions.shape[-1] != self.action_dim:
            raise ConfigError(f"this world model was trained for {self.action_dim}-D actions, got "
                              f"{actions.shape[-1]}-D ones")
        w_in, b_in, w_motion, b_motion, w_out, b_out = io if io is not None else self.io_weights()
        x = F.linear(latents, w_in, b_in)
        if w_motion is not None:
            change = torch.cat([torch.zeros_like(latents[:, :1]), latents[:, 1:] - latents[:, :-1]], 1)
            x = x + F.linear(change, w_motion, b_motion)
        x = torch.cat([self.action_in(actions)[:, :, None], x], 2)  # [B, T, 1+N, E]
        x = (x + self.slot_pos + self.time_pos[:, :t].to(x.dtype)).flatten(1, 2)
        mask = block_causal_mask(t, n + 1).to(x.device) if t > 1 else None  # one frame: full attention
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        x = x.unflatten(1, (t, n + 1))[:, :, 1:]
        if last_only:
            x, latents = x[:, -1:], latents[:, -1:]
        return latents + F.linear(self.norm(x), w_out, b_out)  # residual: frames change little per step

    def rollout(self, history: torch.Tensor, history_actions: torch.Tensor, actions: torch.Tensor,
                context: int | None = None) -> torch.Tensor:
        """Imagine H steps: history latents [B, k, N, D], the k-1 actions between them [B, k-1, A] and candidate
        actions [B, H, A] (the first one acts on the last history frame) -> predicted latents [B, H, N, D]. The
        model sees at most `context` frames (default max_frames), the most recent ones."""
        context = context or self.max_frames
        frames = list(history.unbind(1))
        acts = torch.cat([history_actions, actions], 1)
        k, io = len(frames), self.io_weights()
        preds = []
        for h in range(actions.shape[1]):
            lo = max(0, k + h - context)
            z = torch.stack(frames[lo:], 1)
            nxt = self(z, acts[:, lo : k + h], last_only=True, io=io)[:, -1]
            frames.append(nxt)
            preds.append(nxt)
        return torch.stack(preds, 1)


class WorldModel(L.LightningModule):
    """The action-conditioned predictor trained on latents of a frozen encoder (its weights are saved with the
    world model, so `jepa plan` needs only this checkpoint).

    Args:
        encoder_ckpt: checkpoint (or export folder) of the frozen encoder.
        encoder_which: target_encoder, encoder or auto.
        pool_grid: average-pool the encoder's patch tokens to pool_grid x pool_grid (0: keep them all).
        fold: pool to (pool_grid * fold)^2 instead and concatenate each fold x fold block into one token: finer
            positions at the attention cost of pool_grid^2 tokens (jepa_control/encoding.py).
        mean: per-channel normalisation of frames (the encoder's pretraining one).
        std: per-channel normalisation std.
        action_dim: action size.
        embed_dim: predictor width.
        depth: predictor blocks.
        num_heads: attention heads.
        context: most frames the predictor sees (training windows and planning both).
        rollout_steps: steps of the multi-step rollout loss (0: teacher forcing only).
        rollout_weight: weight of the rollout loss.
        rollout_history: true frames the rollout loss starts from (1 to context). 1, the default, is V-JEPA
            2-AC's; the context is how planning starts (the working memory's last frames), and where momentum
            rules (PointMaze's ball) only two frames tell the velocity. Windows need rollout_history +
            rollout_steps frames.
        motion: the predictor also sees each frame's change since the previous one and predicts the next change,
            both in units of the training latents' per-channel change std (ActionConditionedPredictor; measured
            when fitting starts, saved with the checkpoint).
        whiten: the predictor works in PCA-whitened token coordinates measured on the training latents
            (ActionConditionedPredictor says why).
        position_readout: also fit a linear read-out of the agent's (x, y) from a frame's latents (ridge, on the
            training latents and the positions recorded at collection, when fitting starts; saved with the
            checkpoint) for `jepa plan --distance position`: a goal distance that grows with the true distance where
            the latent one saturates (a small object: once it is in another token, every distance looks alike).
            The planner still sees pixels only; the read-out is learned from the collected data.
        position_weight: adds this weight x the MSE between the read-outs of the predicted and of the true next
            latents to the loss (teacher forcing and rollout): the latent loss spreads over every direction of the
            tokens, the read-out looks at two, and without it PointMaze's imagined positions were no better than
            "nothing moves". In squared position units against the latent loss's (PointMaze: 1e-3).
        loss: "l1" (V-JEPA 2-AC's, the default) or "mse". L1's optimum is each latent's conditional median, MSE's
            its mean: where only a few pixels move (PointMaze's ball) most latents' median change is zero and L1
            can settle on "nothing moves"; MSE still pays for the expected move.
        lr: AdamW peak learning rate (linear warm-up, cosine decay to 0 over the trainer's max_steps).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
    """

    def __init__(self, encoder_ckpt: str, encoder_which: str = "auto", pool_grid: int = 2, fold: int = 1,
                 mean: tuple[float, ...] = TWO_ROOMS_MEAN, std: tuple[float, ...] = TWO_ROOMS_STD,
                 action_dim: int = 2, embed_dim: int = 64, depth: int = 3, num_heads: int = 4, context: int = 2,
                 rollout_steps: int = 3, rollout_weight: float = 1.0, rollout_history: int = 1, motion: bool = False,
                 whiten: bool = False, position_readout: bool = False, position_weight: float = 0.0, loss: str = "l1",
                 lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 100) -> None:
        super().__init__()
        from jepa_control.encoding import FrozenEncoder

        if loss not in LATENT_LOSSES:
            raise ConfigError(f"model.loss = {loss!r}: choose one of {sorted(LATENT_LOSSES)}")
        self.latent_loss = LATENT_LOSSES[loss]
        if not 1 <= rollout_history <= context:
            raise ConfigError(f"model.rollout_history = {rollout_history}: must be between 1 and context ({context})")
        if position_weight and not position_readout:
            raise ConfigError("model.position_weight needs model.position_readout true (it weighs the read-out's "
                              "error)")

        self.save_hyperparameters()
        self.frozen_encoder = FrozenEncoder.from_checkpoint(encoder_ckpt, mean, std, pool_grid, encoder_which, fold)
        self.predictor = ActionConditionedPredictor(self.frozen_encoder.dim, self.frozen_encoder.num_tokens,
                                                    action_dim, embed_dim, depth, num_heads, max_frames=context,
                                                    motion=motion, whiten=whiten)
        if position_readout:
            features = self.frozen_encoder.num_tokens * self.frozen_encoder.dim
            self.register_buffer("readout_weight", torch.zeros(features, 2))
            self.register_buffer("readout_bias", torch.zeros(2))

    def setup(self, stage: str) -> None:
        """Measure the whitening, the change scale and the position read-out on the training latents (a resumed
        fit then loads its own)."""
        if stage != "fit" or not (self.hparams.motion or self.hparams.whiten or self.hparams.position_readout):
            return
        train_set = getattr(self.trainer.datamodule, "train_set", None)
        latents = getattr(train_set, "latents", None)
        if latents is None:
            raise ConfigError("model.motion / model.whiten / model.position_readout need the training latents (data: "
                              "jepa_control.LatentTrajectoryDataModule)")
        if self.hparams.position_readout:
            self.fit_position_readout(latents, train_set.positions)
        p = self.predictor
        if self.hparams.whiten:
            mean, whitener, unwhitener = whitening(latents)
            p.latent_mean.copy_(mean)
            p.whitener.copy_(whitener)
            p.unwhitener.copy_(unwhitener)
            latents = (latents.float() - mean) @ whitener
        if self.hparams.motion:
            p.change_scale.copy_(change_std(latents))

    def fit_position_readout(self, latents: torch.Tensor, positions: torch.Tensor | None,
                             max_rows: int = 20_000) -> float:
        """Ridge read-out of the (x, y) positions [E, T, 2] from the latents [E, T, N, D] (alpha chosen on a fifth
        of the rows); returns that fifth's R^2."""
        from jepa_control.gate import ridge_fit, ridge_select

        if positions is None or positions.shape[-1] != 2:
            raise ConfigError("model.position_readout needs the agent's recorded (x, y) positions (the trajectories' "
                              f"proprio), got {None if positions is None else tuple(positions.shape)}")
        x, y = latents.float().flatten(2).flatten(0, 1), positions.float().flatten(0, 1)
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:max_rows]
        alpha, r2 = ridge_select(x[rows], y[rows])
        weight, bias = ridge_fit(x[rows], y[rows], alpha)
        self.readout_weight.copy_(weight.float())
        self.readout_bias.copy_(bias.float())
        return r2

    def read_position(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [..., N, D] -> the read-out's (x, y) [..., 2] (model.position_readout)."""
        if not self.hparams.get("position_readout"):
            raise ConfigError("this world model has no position read-out: fit it with model.position_readout true")
        return latents.flatten(-2) @ self.readout_weight + self.readout_bias

    def teacher_forced(self, latents: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every frame of the window predicts the next one from the true frames so far: (predictions, targets)."""
        c = self.hparams.context
        return self.predictor(latents[:, :c], actions[:, :c]), latents[:, 1 : c + 1]

    def rolled_out(self, latents: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From the first rollout_history true frames, feed predictions back for rollout_steps steps:
        (predictions, targets)."""
        r, k = self.hparams.rollout_steps, self.hparams.rollout_history
        preds = self.predictor.rollout(latents[:, :k], actions[:, : k - 1], actions[:, k - 1 : k - 1 + r],
                                       self.hparams.context)
        return preds, latents[:, k : k + r]

    def losses(self, batch) -> dict[str, torch.Tensor]:
        latents, actions = batch["latents"], batch["actions"]
        need = max(self.hparams.context + 1, self.hparams.rollout_steps + self.hparams.rollout_history)
        if latents.shape[1] < need:
            raise ConfigError(f"windows of {latents.shape[1]} frames are too short: context / rollout_history + "
                              f"rollout_steps need {need}")
        pairs = {"teacher_forcing": self.teacher_forced(latents, actions)}
        if self.hparams.rollout_steps:
            pairs["rollout"] = self.rolled_out(latents, actions)
        out = {name: self.latent_loss(preds, targets) for name, (preds, targets) in pairs.items()}
        out["loss"] = out["teacher_forcing"] + self.hparams.rollout_weight * out.get("rollout", 0.0)
        if self.hparams.position_weight:
            # where the read-out of the predictions lands against the read-out of the true next latents (no
            # recorded positions needed here): the few directions the position cost reads are the ones planning needs
            out["position"] = sum(F.mse_loss(self.read_position(preds), self.read_position(targets))
                                  for preds, targets in pairs.values()) / len(pairs)
            out["loss"] = out["loss"] + self.hparams.position_weight * out["position"]
        return out

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["latents"]))
        return losses["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch["latents"]))

    def configure_optimizers(self):
        return adamw_cosine(self.predictor.parameters(), self.hparams.lr, self.hparams.weight_decay, self.trainer,
                            self.hparams.warmup_steps)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [B, T, H, W, C] -> layer-normed latents [B, T, N, D] (what the predictor models)."""
        return self.frozen_encoder(frames)


def change_std(latents: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """Per-channel std of one step's latent change over episodes [E, T, N, D], floored at `floor` x the median
    channel's (a channel that barely moves must not be blown up into noise)."""
    std = (latents[:, 1:].float() - latents[:, :-1].float()).flatten(0, 2).std(0)
    return std.clamp_min(floor * std.median())


def whitening(latents: torch.Tensor, floor: float = 1e-3, max_tokens: int = 200_000):
    """PCA whitening of the tokens [E, T, N, D] (at most max_tokens of them, drawn with a fixed seed): (mean,
    whitener, unwhitener) with (z - mean) @ whitener of unit variance in every principal direction whose
    eigenvalue is above `floor` x their mean (those below are scaled as if at the floor: noise is not blown up),
    and unwhitener its inverse."""
    tokens = latents.float().flatten(0, 2)
    tokens = tokens[torch.randperm(len(tokens), generator=torch.Generator().manual_seed(0))[:max_tokens]]
    mean = tokens.mean(0)
    eig, vec = torch.linalg.eigh(torch.cov((tokens - mean).T.double()))
    eig = eig.clamp_min(floor * eig.mean())
    return mean, (vec / eig.sqrt()).float(), (vec * eig.sqrt()).T.float()


def adamw_cosine(params, lr: float, weight_decay: float, trainer=None, warmup_steps: int = 0) -> dict:
    """AdamW over the trainable ones of `params` (jepa.optim.decay_groups: no decay on biases and norms) with a linear
    warm-up then a cosine decay to 0 over the trainer's max_steps (1000 without a trainer): the optimiser of every
    module of jepa_control."""
    opt = torch.optim.AdamW(decay_groups(params), lr=lr, weight_decay=weight_decay)
    total = max(1, trainer.max_steps if trainer is not None and trainer.max_steps > 0 else 1000)
    warm = min(warmup_steps, total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / max(1, warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                               "interval": "step"}}


def load_module(path: str, cls, what: str, required: tuple[str, ...], **overrides):
    """A control LightningModule rebuilt from its checkpoint's hyperparameters (with `overrides`) and strictly
    loaded with weights_only=True; `required` hyperparameters tell this project's checkpoints of `cls` apart."""
    from jepa.checkpoint import load_checkpoint, load_strict, strip_prefixes

    ckpt = load_checkpoint(path)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    missing = [k for k in required if k not in hparams]
    if missing or "state_dict" not in ckpt:
        raise ConfigError(f"{path} is not {what} checkpoint of this project (no "
                          f"{missing[0] + ' hyperparameter' if missing else 'state_dict'})")
    hparams = {k: v for k, v in {**hparams, **overrides}.items() if not k.startswith("_")}
    # options added after the checkpoint was written take their defaults (chosen to keep the old behaviour), and
    # are recorded, so code reading self.hparams finds them (a pre-rollout_history world model in the joint step)
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    hparams = {**defaults, **hparams}
    model = cls(**hparams)
    # loaded inside another module built by LightningCLI (an actor, an energy), save_hyperparameters() records that
    # module's config instead of these: put the module's own back
    model.hparams.clear()
    model.hparams.update(hparams)
    load_strict(model, strip_prefixes(ckpt["state_dict"]), str(path))
    return model.eval()


def load_world_model(path: str, encoder_ckpt: str | None = None) -> WorldModel:
    """A trained world model, strictly loaded with weights_only=True. The encoder's architecture is read from
    `encoder_ckpt` (default: the path it was trained with); its weights come from the world model's checkpoint."""
    overrides = {"encoder_ckpt": encoder_ckpt} if encoder_ckpt else {}
    return load_module(path, WorldModel, "a world-model", ("encoder_ckpt",), **overrides)
