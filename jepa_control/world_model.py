"""The world model as a LightningModule: the action-conditioned predictor (jepa_control/predictor.py) trained on
latents of a frozen encoder with teacher forcing plus a multi-step rollout loss (the model's own predictions fed
back), both L1 on layer-normed targets (V-JEPA 2-AC), optionally with a position read-out.
"""
from __future__ import annotations

import inspect

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from jepa.errors import ConfigError
from jepa_control.encoding import FrozenEncoder
from jepa_control.frames import TWO_ROOMS_MEAN, TWO_ROOMS_STD
from jepa_control.latent_stats import change_std, whitening
from jepa_control.loading import load_module
from jepa_control.optim import adamw_cosine
from jepa_control.predictor import ActionConditionedPredictor

LATENT_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
ENCODER_KEY = "frozen_encoder_settings"  # the checkpoint's record of FrozenEncoder.settings
# what world models took before they were handed their encoder (read back from older checkpoints)
LEGACY_ENCODER_ARGS = ("encoder_ckpt", "encoder_which", "pool_grid", "fold", "mean", "std")


def saved_encoder(settings: dict | None, hparams: dict, path: str, encoder_ckpt: str | None = None) -> FrozenEncoder:
    """The frozen encoder a world model's checkpoint records (weights still to load): from its settings, or, for a
    checkpoint written before they were recorded, from the encoder's file its hyperparameters name (`encoder_ckpt`
    where that file moved); those keys are taken out of `hparams`."""
    if settings is not None:
        return FrozenEncoder.from_settings(settings)
    if "encoder_ckpt" not in hparams:
        raise ConfigError(f"{path} is not a world-model checkpoint of this project (no {ENCODER_KEY})")
    legacy = {k: hparams.pop(k) for k in LEGACY_ENCODER_ARGS if k in hparams}
    return FrozenEncoder.from_checkpoint(encoder_ckpt or legacy["encoder_ckpt"], legacy.get("pool_grid", 2),
                                         legacy.get("fold", 1), legacy.get("encoder_which", "auto"),
                                         legacy.get("mean", TWO_ROOMS_MEAN), legacy.get("std", TWO_ROOMS_STD))


class WorldModel(L.LightningModule):
    """The action-conditioned predictor trained on latents of a frozen encoder (the encoder's weights and
    architecture are saved with the world model, so `jepa plan` needs only this checkpoint).

    Args:
        frozen_encoder: the frozen encoder and its pooling (jepa_control.encoding.FrozenEncoder); configs build it
            from a checkpoint by dependency injection:
                frozen_encoder:
                  class_path: jepa_control.FrozenEncoder.from_checkpoint
                  init_args: {path: runs/two_rooms/encoder/checkpoints/last.ckpt, pool_grid: 2, fold: 1,
                              which: target_encoder}
            (`pool_grid`: the patch tokens average-pooled to pool_grid x pool_grid, 0 keeps them all; `fold`: pooled
            to (pool_grid * fold)^2 instead, each fold x fold block concatenated into one token: finer positions at
            the attention cost of pool_grid^2 tokens; frames are normalised as the encoder recorded at pretraining,
            or by `mean` / `std` given there).
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
        whiten_dims: whiten onto the top whiten_dims principal directions only (0: all; ActionConditionedPredictor
            says why).
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
        frameskip: env steps one model step covers (the training windows' frameskip): its action is the frameskip
            env actions between two frames, concatenated, so action_dim is frameskip x the env's. Planning holds
            each planned action for a multiple of frameskip env steps and feeds the model the held copies.
        proprio_scale: > 0 adds the agent's proprioception (the trajectories' proprio, info["proprio"] or
            info["pos"] when planning) to every state as one more token, its first proprio_dim values through a
            fixed random projection to the token width times this scale (DINO-WM's proprioception): the predictor
            predicts it with the frame tokens, and the goal distance compares it with the goal's
            (info["goal_proprio"], else info["goal"]). Where the agent is a few pixels (Push-T's pusher) its
            position then weighs in the cost as one whole token; the scale sets how much (about 1 / the positions'
            std puts it on the latents' scale). 0: frames only.
        proprio_dim: how many proprioception values the token carries: 2, the agent's (x, y); 4 adds what an
            adapter records after them (Reacher: the joint velocities, which two frames a model step apart do not
            show). The goal's extra values are the goal at rest.
        state_dim: > 0 adds a learned linear read-out of the env's recorded true state (the trajectories' state,
            S values per frame, e.g. Push-T's pusher and block pose) from a state's latents, for `jepa plan --distance
            state`: a goal distance that weighs what the env's success rule judges where the latent one does not (a
            turn of Push-T's block moves a few pixels). The planner still sees pixels only.
        state_weight: the read-out's loss weight: its MSE on the true latents of every window frame and on the
            predicted ones (teacher forcing and rollout) against the recorded states, so the predictor keeps what the
            read-out reads (and, where the encoder trains with the model, the encoder learns to show it).
        training_latents: the training set's latents and positions (latent_data.TrainingLatents), read when fitting
            starts by motion / whiten / position_readout; handed over from the datamodule (`jepa fit` wires it), never
            saved with the checkpoint.
    """

    def __init__(self, frozen_encoder: FrozenEncoder, action_dim: int = 2, embed_dim: int = 64, depth: int = 3,
                 num_heads: int = 4, context: int = 2, rollout_steps: int = 3, rollout_weight: float = 1.0,
                 rollout_history: int = 1, motion: bool = False,
                 whiten: bool = False, whiten_dims: int = 0, position_readout: bool = False,
                 position_weight: float = 0.0, loss: str = "l1",
                 lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 100, frameskip: int = 1,
                 proprio_scale: float = 0.0, proprio_dim: int = 2, state_dim: int = 0, state_weight: float = 0.0,
                 training_latents: object | None = None) -> None:
        super().__init__()
        if loss not in LATENT_LOSSES:
            raise ConfigError(f"model.loss = {loss!r}: choose one of {sorted(LATENT_LOSSES)}")
        self.latent_loss = LATENT_LOSSES[loss]
        if not 1 <= rollout_history <= context:
            raise ConfigError(f"model.rollout_history = {rollout_history}: must be between 1 and context ({context})")
        if frameskip < 1 or action_dim % frameskip:
            raise ConfigError(f"model.frameskip = {frameskip}: must be >= 1 and divide model.action_dim ({action_dim})")
        if proprio_scale < 0 or (proprio_scale and position_readout):
            raise ConfigError(f"model.proprio_scale = {proprio_scale}: must be >= 0, and is not read with "
                              "model.position_readout (the state then carries the position itself)")
        if state_dim < 0 or (state_weight > 0) != (state_dim > 0):
            raise ConfigError(f"model.state_dim = {state_dim}, model.state_weight = {state_weight}: a state read-out "
                              "needs both > 0 (the recorded state's size and the weight it is learned with)")
        if position_weight and not position_readout:
            raise ConfigError("model.position_weight needs model.position_readout true (it weighs the read-out's "
                              "error)")

        # the encoder is a module: its weights are in the state dict, its settings saved by on_save_checkpoint
        self.save_hyperparameters(ignore=["training_latents", "frozen_encoder"])
        self.training_latents = training_latents
        self.frozen_encoder = frozen_encoder
        if proprio_scale:  # fixed, saved with the weights: the same projection for training and planning
            if proprio_dim < 2:
                raise ConfigError(f"model.proprio_dim = {proprio_dim}: must be >= 2 (the agent's x, y come first)")
            projection = torch.randn(proprio_dim, self.frozen_encoder.dim, generator=torch.Generator().manual_seed(0))
            self.register_buffer("proprio_projection", projection / 2**0.5)
        self.predictor = ActionConditionedPredictor(self.frozen_encoder.dim, self.num_tokens,
                                                    action_dim, embed_dim, depth, num_heads, max_frames=context,
                                                    motion=motion, whiten=whiten, whiten_dims=whiten_dims)
        if state_dim:
            self.state_readout = nn.Linear(self.num_tokens * self.frozen_encoder.dim, state_dim)
        if position_readout:
            features = self.frozen_encoder.num_tokens * self.frozen_encoder.dim
            self.register_buffer("readout_weight", torch.zeros(features, 2))
            self.register_buffer("readout_bias", torch.zeros(2))

    def setup(self, stage: str) -> None:
        """Measure the whitening, the change scale and the position read-out on the training latents it was handed
        (a resumed fit then loads its own)."""
        if stage != "fit" or not (self.hparams.motion or self.hparams.whiten or self.hparams.position_readout):
            return
        if self.training_latents is None:
            raise ConfigError("model.motion / model.whiten / model.position_readout need the training latents: "
                              "data jepa_control.LatentTrajectoryDataModule hands them over under `jepa fit` (in "
                              "Python: WorldModel(..., training_latents=datamodule.training_latents))")
        latents = self.with_proprio(self.training_latents.latents, self.training_latents.positions)
        if self.hparams.position_readout:
            self.fit_position_readout(latents, self.training_latents.positions)
        p = self.predictor
        if self.hparams.whiten:
            mean, whitener, unwhitener = whitening(latents, dims=self.hparams.whiten_dims)
            p.latent_mean.copy_(mean)
            p.whitener.copy_(whitener)
            p.unwhitener.copy_(unwhitener)
            latents = (latents.float() - mean) @ whitener
        if self.hparams.motion:
            p.change_scale.copy_(change_std(latents))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[ENCODER_KEY] = self.frozen_encoder.settings

    def fit_position_readout(self, latents: torch.Tensor, positions: torch.Tensor | None,
                             max_rows: int = 20_000) -> float:
        """Ridge read-out of the (x, y) positions [E, T, 2] from the latents [E, T, N, D] (alpha chosen on a fifth
        of the rows); returns that fifth's R^2."""
        from jepa_control.gate import frame_rows, ridge_fit, ridge_select

        if positions is None or positions.shape[-1] != 2:
            raise ConfigError("model.position_readout needs the agent's recorded (x, y) positions (the trajectories' "
                              f"proprio), got {None if positions is None else tuple(positions.shape)}")
        x, y = frame_rows(latents, positions, max_rows, torch.Generator().manual_seed(0))
        alpha, r2 = ridge_select(x, y)
        weight, bias = ridge_fit(x, y, alpha)
        self.readout_weight.copy_(weight.float())
        self.readout_bias.copy_(bias.float())
        return r2

    @property
    def reads_position(self) -> bool:
        """Whether read_position works: a fitted read-out, or the proprioception token the states carry."""
        return bool(self.hparams.get("position_readout") or self.hparams.get("proprio_scale"))

    def read_position(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [..., N, D] -> the agent's (x, y) [..., 2]: the read-out's (model.position_readout), or the
        proprioception token mapped back through its fixed projection (model.proprio_scale; exact on encoded
        states, on imagined ones where the predictor put the agent)."""
        if self.hparams.get("proprio_scale"):
            back = torch.linalg.pinv(self.proprio_projection.double()).to(latents)
            return (latents[..., -1, :] @ back / self.hparams.proprio_scale)[..., :2]
        if not self.hparams.get("position_readout"):
            raise ConfigError("this world model reads no position: fit it with model.position_readout true or "
                              "model.proprio_scale > 0")
        return latents.flatten(-2) @ self.readout_weight + self.readout_bias

    @property
    def reads_state(self) -> bool:
        """Whether read_state works: the model learned a read-out of the env's state (model.state_dim)."""
        return bool(self.hparams.get("state_dim"))

    def read_state(self, latents: torch.Tensor) -> torch.Tensor:
        """States [..., N, D] -> the env's state [..., S] as the learned read-out (model.state_dim) sees it."""
        if not self.reads_state:
            raise ConfigError("this world model reads no state: fit it with model.state_dim and model.state_weight "
                              "on trajectories that recorded the env's state")
        return self.state_readout(latents.flatten(-2))

    def state_loss(self, latents: torch.Tensor, pairs: dict, states: torch.Tensor | None) -> torch.Tensor:
        """The read-out's MSE against the recorded states [B, W, S]: on every true state of the window, and on the
        predictions of each (teacher forcing, rollout) pair, at the frames they predict. Each state value's error is
        in units of its spread over the batch, so every value weighs alike whatever its scale (Push-T's angle,
        scaled for the pose rule, spreads a tenth of the positions': at its own scale it would hardly count)."""
        if states is None:
            raise ConfigError("model.state_weight needs the env's recorded state per frame: collect the data again "
                              "with `jepa collect` (its adapter records info['state'])")
        c, k, r = self.hparams.context, self.hparams.rollout_history, self.hparams.rollout_steps
        predicted = {"teacher_forcing": slice(1, c + 1), "rollout": slice(k, k + r)}
        spread = states.flatten(0, -2).std(0).clamp_min(1e-6)
        terms = [F.mse_loss(self.read_state(latents) / spread, states / spread)]
        terms += [F.mse_loss(self.read_state(preds) / spread, states[:, predicted[name]] / spread)
                  for name, (preds, _) in pairs.items()]
        return sum(terms) / len(terms)

    def trained_parameters(self) -> list[nn.Parameter]:
        """What the optimiser moves: the predictor, and the state read-out where there is one."""
        return [*self.predictor.parameters(), *(self.state_readout.parameters() if self.reads_state else [])]

    @property
    def num_tokens(self) -> int:
        """Tokens per state: the frame's, and the proprioception's where the model reads it."""
        return self.frozen_encoder.num_tokens + bool(self.hparams.get("proprio_scale"))

    def with_proprio(self, latents: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """Frame latents [..., N, D] -> the model's states: with the proprioception token appended (the first
        proprio_dim values of proprio [..., P]) where the model reads it, else unchanged."""
        if not self.hparams.get("proprio_scale"):
            return latents
        if proprio is None:
            raise ConfigError("this world model reads the agent's position beside its frames (model.proprio_scale): "
                              "hand it the trajectories' proprio / the env's info['pos']")
        dim = self.proprio_projection.shape[0]
        if proprio.shape[-1] < dim:
            raise ConfigError(f"this world model reads {dim} proprioception values (model.proprio_dim), the data or "
                              f"env give {proprio.shape[-1]}: collect the data again with `jepa collect` (its "
                              "adapter records them) or set model.proprio_dim 2")
        token = self.hparams.proprio_scale * proprio[..., :dim].to(latents) @ self.proprio_projection
        return torch.cat([latents, token.unsqueeze(-2)], -2)

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
        latents, actions = self.with_proprio(batch["latents"], batch.get("proprio")), batch["actions"]
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
        if self.hparams.get("state_weight"):
            out["state"] = self.state_loss(latents, pairs, batch.get("state"))
            out["loss"] = out["loss"] + self.hparams.state_weight * out["state"]
        return out

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["actions"]))
        return losses["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        losses = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch["actions"]))

    def configure_optimizers(self):
        return adamw_cosine(self.trained_parameters(), self.hparams.lr, self.hparams.weight_decay, self.trainer,
                            self.hparams.warmup_steps)

    @property
    def frameskip(self) -> int:
        """Env steps one model step covers (checkpoints from before the setting: one)."""
        return self.hparams.get("frameskip", 1)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 frames [B, T, H, W, C] (and the agent's positions [B, T, 2], read by a model with proprioception)
        -> the states the predictor models [B, T, N, D] (N counts the proprioception token)."""
        return self.with_proprio(self.frozen_encoder(frames), proprio)

    @classmethod
    def from_checkpoint(cls, path: str, encoder_ckpt: str | None = None) -> "WorldModel":
        """A trained world model, strictly loaded with weights_only=True, from its checkpoint alone (a pixel world
        model's too: its encoder is then frozen). A checkpoint written before world models recorded their encoder's
        settings names the encoder's file instead: its architecture is read from there, or from `encoder_ckpt`
        where that file moved."""
        from jepa.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        if not isinstance(ckpt, dict):
            raise ConfigError(f"{path} is not a world-model checkpoint of this project (it holds a "
                              f"{type(ckpt).__name__})")
        hparams = dict(ckpt.get("hyper_parameters") or {})
        encoder = saved_encoder(ckpt.get(ENCODER_KEY), hparams, path, encoder_ckpt)
        # a pixel world model (jepa_control.pixel_world_model) also records how its encoder was trained
        own = inspect.signature(cls.__init__).parameters
        ckpt = {**ckpt, "hyper_parameters": {k: v for k, v in hparams.items() if k in own}}
        return load_module(path, cls, "a world-model", ("action_dim",), ckpt=ckpt,
                           modules={"frozen_encoder": encoder})
