"""What a module trained on a trained world model (an actor, an energy) shares: it takes the WorldModel itself, and
its checkpoint keeps the world model's hyperparameters and encoder settings beside the weights (the world model is a
submodule, so its weights are in the state dict already), so the module is read back from its own checkpoint alone.

A config names the world model through jsonargparse's dependency injection, a function returning one:

    world_model:
      class_path: jepa_control.WorldModel.from_checkpoint
      init_args: {path: runs/two_rooms/world_model/checkpoints/last.ckpt}

(read when the classes are instantiated, not while the config is parsed, so a command-line override of the path
replaces a default that does not exist yet).
"""
from __future__ import annotations

from jepa.errors import ConfigError
from jepa_control.loading import load_module
from jepa_control.world_model import ENCODER_KEY, WorldModel, saved_encoder

WORLD_MODEL_KEY = "world_model_hyper_parameters"
WORLD_MODEL_ENCODER_KEY = "world_model_" + ENCODER_KEY


def saved_world_model(ckpt: dict, path: str, what: str) -> WorldModel:
    """The world model of an actor's or energy's checkpoint, built from the hyperparameters and encoder settings
    saved in it (its weights come with the outer module's state dict)."""
    hparams = ckpt.get(WORLD_MODEL_KEY)
    if hparams is not None:
        hparams = dict(hparams)
        return WorldModel(saved_encoder(ckpt.get(WORLD_MODEL_ENCODER_KEY), hparams, path), **hparams)
    legacy = (ckpt.get("hyper_parameters") or {}).get("world_model")
    if isinstance(legacy, str):  # an older checkpoint: the hyperparameters are in the world model's own file
        return WorldModel.from_checkpoint(legacy)
    raise ConfigError(f"{path} is not {what} checkpoint of this project (no {WORLD_MODEL_KEY})")


def frame_states_only(world_model: WorldModel, what: str) -> None:
    """An actor's or energy's states are the frame tokens alone: a world model that adds a proprioception token
    (model.proprio_scale) is refused until they read it."""
    if world_model.num_tokens != world_model.frozen_encoder.num_tokens:
        raise ConfigError(f"the world model reads proprioception (model.proprio_scale): not supported by {what} yet")


class OnWorldModel:
    """Mixin for a LightningModule that holds its world model as `self.wm`; subclasses name their checkpoint kind
    (`checkpoint_kind`, for errors) and the hyperparameters that tell their checkpoints apart (`checkpoint_keys`)."""

    checkpoint_kind: str
    checkpoint_keys: tuple[str, ...]

    @property
    def frozen_encoder(self):  # what `jepa fit` hands LatentTrajectoryDataModule to encode the data with
        return self.wm.frozen_encoder

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[WORLD_MODEL_KEY] = dict(self.wm.hparams)
        checkpoint[WORLD_MODEL_ENCODER_KEY] = self.wm.frozen_encoder.settings

    @classmethod
    def from_checkpoint(cls, path: str):
        """A trained module (strict, weights_only), its world model rebuilt from the same checkpoint."""
        from jepa.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        world_model = saved_world_model(ckpt, path, cls.checkpoint_kind)
        return load_module(path, cls, cls.checkpoint_kind, cls.checkpoint_keys, ckpt=ckpt,
                           modules={"world_model": world_model})
