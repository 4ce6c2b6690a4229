"""Rebuilding a control module from its own checkpoint (hyperparameters + weights, weights-only)."""
from __future__ import annotations

import inspect

from jepa.errors import ConfigError


def load_module(path: str, cls, what: str, required: tuple[str, ...], ckpt: dict | None = None,
                modules: dict | None = None, **overrides):
    """A control LightningModule rebuilt from its checkpoint's hyperparameters (with `overrides`) and strictly
    loaded with weights_only=True; `required` hyperparameters tell this project's checkpoints of `cls` apart.
    `ckpt` is the checkpoint already read from `path`; `modules` are constructor arguments that are modules (a
    world model), handed to the constructor but not recorded as hyperparameters (their weights are in the state
    dict)."""
    from jepa.checkpoint import load_checkpoint, load_strict, strip_prefixes

    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    modules = modules or {}
    hparams = dict(ckpt.get("hyper_parameters") or {})
    missing = [k for k in required if k not in hparams]
    if missing or "state_dict" not in ckpt:
        raise ConfigError(f"{path} is not {what} checkpoint of this project (no "
                          f"{missing[0] + ' hyperparameter' if missing else 'state_dict'})")
    hparams = {k: v for k, v in {**hparams, **overrides}.items() if not k.startswith("_") and k not in modules}
    # options added after the checkpoint was written take their defaults (chosen to keep the old behaviour), and
    # are recorded, so code reading self.hparams finds them (a pre-rollout_history world model in the joint step)
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    hparams = {**defaults, **hparams}
    model = cls(**hparams, **modules)
    # loaded inside another module built by LightningCLI (an actor, an energy), save_hyperparameters() records that
    # module's config instead of these: put the module's own back
    model.hparams.clear()
    model.hparams.update(hparams)
    load_strict(model, strip_prefixes(ckpt["state_dict"]), str(path))
    return model.eval()
