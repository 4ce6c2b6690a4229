"""The `jepa` command: LightningCLI for fit and validate, plus the subcommands other packages register.

Models and datamodules are picked by class_path in the YAML config and subcommands come from the `jepa.commands`
entry points (jepa/commands.py), so this core module imports none of the packages that use it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Optional

from jepa.commands import help_line, prefer_own_packages, registered_commands, run_command
from jepa.config_files import BASES_KEY, expand_configs, given_data_values
from jepa.errors import ConfigError

# LightningCLI's test and predict are left out: no module of the project implements test_step or predict_step
LIGHTNING_COMMANDS = ("fit", "validate")
# (model key, data key) pairs that must agree: the datamodule's image size, channels and clip length are the model's
LINKED_TO_MODEL = (("img_size", "img_size"), ("img_size", "size"), ("in_chans", "channels"),
                   ("num_frames", "num_frames"))


def _overview() -> str:
    commands = registered_commands()
    lines = ["usage: jepa {fit,validate," + ",".join(commands) + "} [options]", "",
             "JEPA pretraining, evaluation and planning.", "",
             "  fit / validate                    LightningCLI: jepa fit --config configs/ijepa/<recipe>.yaml "
             "[--trainer.devices N ...]; jepa fit --help lists every option"]
    lines += [f"  {name:<33} {help_line(ep)}" for name, ep in commands.items()]
    return "\n".join(lines)


def build_cli(args: list[str], run: bool = True):
    """The LightningCLI used by `jepa fit` and friends (also usable in-process, e.g. by the quickstart).

    With run=False, `args` still starts with the subcommand it stands for ("fit"): the CLI then only
    instantiates the trainer, model and datamodule and the caller runs them.
    """
    import warnings

    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from jepa.run_record import RunRecord

    class JepaCLI(LightningCLI):
        @staticmethod
        def subcommands() -> dict:
            return {name: v for name, v in LightningCLI.subcommands().items() if name in LIGHTNING_COMMANDS}

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(RunRecord, "run_record")
            parser.add_argument(f"--{BASES_KEY}", type=Optional[list[str]], default=None,
                                help="config files this config builds on, relative to it (jepa/config_files.py)")
            parser.add_argument("--overwrite", type=bool, default=False,
                                help="start a fresh run in a trainer.default_root_dir that holds another run's "
                                     "results (replacing them); without it such a run refuses to start")
            # what the data must share with the model follows the model (skipped where either class lacks the key)
            for source, target in LINKED_TO_MODEL:
                parser.link_arguments(f"model.init_args.{source}", f"data.init_args.{target}", apply_on="parse")

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            model = (config.get("model") or {}).get("init_args") or {}
            data = (config.get("data") or {}).get("init_args") or {}
            for source, target in LINKED_TO_MODEL:  # a linked value the user set and the link would silently replace
                if source in model and target in data and target in given and given[target] != model[source]:
                    raise ConfigError(f"data.{target} {given[target]} differs from model.{source} {model[source]}: the "
                                      f"data's {target} follows the model's, so set model.{source} instead")
            self._config_text = self.parser.dump(self.config, skip_none=False, skip_validation=True)

        def instantiate_classes(self) -> None:
            super().instantiate_classes()
            # a datamodule of latents hands its training latents to the model that measures statistics on them
            # (whitening, read-outs): wired here, where both are built, rather than by one reading the other
            # through the trainer (a jsonargparse link would print every datamodule lacking the attribute, which
            # builds all its dataloaders)
            latents = getattr(self.datamodule, "training_latents", None)
            if latents is not None and hasattr(self.model, "training_latents"):
                self.model.training_latents = latents
            # and a model with a frozen encoder (a world model, or an actor or energy through its world model) hands
            # it to the datamodule of latents, which encodes the data with the very encoder the model reads
            if hasattr(self.datamodule, "use_encoder") and hasattr(self.model, "frozen_encoder"):
                self.datamodule.use_encoder(self.model.frozen_encoder)

        def _parse_ckpt_path(self) -> None:
            # Lightning reads hyperparameters from a given checkpoint while parsing: check it is intact first
            from jepa.preflight import check_checkpoint

            subcommand = self.config.get("subcommand")
            path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if path not in (None, "auto", "last", "hpc", "best"):
                check_checkpoint(path)
            super()._parse_ckpt_path()

        def before_fit(self) -> None:
            from jepa.outputs import refuse_clobber
            from jepa.preflight import clear_checkpoints, preflight, resolve_auto_checkpoint

            config = self.config_init[self.subcommand]
            if config.get("ckpt_path") is None:  # a resume writes on its own run; a fresh run on no other
                if not config.get("overwrite"):
                    refuse_clobber("trainer.default_root_dir", self.trainer.default_root_dir,
                                   "resume that run with --ckpt_path auto, or pass --overwrite true to replace it")
                clear_checkpoints(self.trainer)
            preflight(self.trainer, self.model)  # unwritable folders, no room for a checkpoint: fail before compute
            if config.get("ckpt_path") == "auto":
                config["ckpt_path"] = resolve_auto_checkpoint(self.trainer)

        def before_validate(self) -> None:
            from jepa.outputs import refuse_clobber

            if not self.config_init[self.subcommand].get("overwrite"):
                refuse_clobber("trainer.default_root_dir", self.trainer.log_dir, "pass --overwrite true to replace "
                               "the earlier validation", markers=("results.json", "metrics.csv"))


        def instantiate_trainer(self, **kwargs):
            config = self._get(self.config_init, "trainer", default={})
            if config.get("logger") in (None, True):  # the project's loggers, both in the run folder
                from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

                root = config.get("default_root_dir") or os.getcwd()
                name = "validate" if self.subcommand == "validate" else "logs"  # never over the training logs
                kwargs["logger"] = [CSVLogger(root, name=name, version=""),
                                    TensorBoardLogger(root, name=name, version="")]
            trainer = super().instantiate_trainer(**kwargs)
            from jepa.checkpoint_io import AtomicCheckpointIO

            if not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):  # every read weights-only
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()
            for cb in trainer.callbacks:
                if isinstance(cb, RunRecord):
                    cb.config_text = getattr(self, "_config_text", None)
            return trainer

    args = expand_configs(args)
    given = given_data_values(args, {target for _, target in LINKED_TO_MODEL})
    if not run:
        args = args[1:] if args and args[0] in LIGHTNING_COMMANDS else args
    # We always pass the arguments explicitly, including when they are sys.argv's: that is not a mistake here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return JepaCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        # parse errors raise instead of printing usage and exiting, so main() can print them in one line
        parser_kwargs={"exit_on_error": False, **({"description": _overview()} if run else {})},
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads unless the user asks
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    try:
        prefer_own_packages()
        if argv[0] in registered_commands():
            return run_command(argv[0], argv[1:])
        if argv[0] not in LIGHTNING_COMMANDS:
            print(f"jepa: error: unknown command {argv[0]!r}\n\n{_overview()}", file=sys.stderr)
            return 2
        build_cli(argv)
    except SystemExit as exit_:
        if type(exit_).__name__ == "SIGTERMException":  # Lightning's exit after SIGTERM; PeriodicCheckpoint saved
            return 143  # 128 + SIGTERM: schedulers see an interrupted run, not a finished one
        raise
    except argparse.ArgumentError as err:  # a config or command line jsonargparse could not parse
        print(f"jepa: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - user errors arrive wrapped by jsonargparse; others are re-raised
        from jepa.nonfinite import NonFiniteTrainingError

        if isinstance(err, NonFiniteTrainingError):
            print(f"jepa: stopped: {err}", file=sys.stderr)
            return 1
        user_error = _find_config_error(err)
        if user_error is None:
            raise
        print(f"jepa: error: {user_error}", file=sys.stderr)
        return 2
    return 0


_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value",
          "Expected a <class 'NoneType'>")


def _one_line(message: str) -> str:
    """jsonargparse's nested, multi-line parse error as one line: the key path and what is wrong."""
    parts = []
    for line in message.splitlines():
        line = line.strip().removeprefix("- ").strip()
        if not line or line.startswith(_NOISE):
            continue
        line = re.sub(r'^Parser key "([^"]+)":?$', r"\1", line)
        line = re.sub(r"^Problem with given class_path '([^']+)':?$", r"\1", line)
        parts.append(line.rstrip(":"))
    return ": ".join(parts) or message


def _find_config_error(err: BaseException | None) -> ConfigError | None:
    """The ConfigError behind an exception, if any: class instantiation wraps it in jsonargparse's errors."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
