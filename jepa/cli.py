"""The `jepa` command: LightningCLI for fit/validate/test/predict, plus the project's own subcommands.

Models and datamodules are picked by class_path in the YAML config, so this core module never imports the
packages that use it; the extra subcommands are imported lazily by name.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from jepa.errors import ConfigError

# subcommand -> (module:function, one-line help). Each function takes argv and returns an exit code.
EXTRA_COMMANDS = {
    "probe": ("eval.probe_cli:main", "linear, kNN and attentive probes of a checkpoint's frozen encoder"),
    "import": ("jepa.interop_cli:import_main", "convert an official I-JEPA checkpoint: jepa import SRC --out CKPT"),
    "export": ("jepa.interop_cli:export_main", "encoder -> safetensors + config.json: jepa export --ckpt CKPT --out DIR"),
    "shards": ("data.shards_cli:main", "write WebDataset tar shards: jepa shards write SOURCE [INPUT] --out DIR"),
    "collect": ("control.collect_cli:main", "roll out a policy in an environment, write trajectories to shards"),
    "plan": ("control.plan_cli:main", "evaluate planners on an environment: success rate, seconds per step"),
    "quickstart": ("ijepa.quickstart:main", "pretrain I-JEPA on Fashion-MNIST, probe it, print the results table"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _overview() -> str:
    lines = ["usage: jepa {fit,validate,test,predict," + ",".join(EXTRA_COMMANDS) + "} [options]", "",
             "JEPA pretraining, evaluation and planning.", "",
             "  fit / validate / test / predict   LightningCLI: jepa fit --config configs/ijepa/<recipe>.yaml "
             "[--trainer.devices N ...]; jepa fit --help lists every option"]
    lines += [f"  {name:<33} {text}" for name, (_, text) in EXTRA_COMMANDS.items()]
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
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(RunRecord, "run_record")

        def before_instantiate_classes(self) -> None:
            self._config_text = self.parser.dump(self.config, skip_none=False, skip_validation=True)

        def _parse_ckpt_path(self) -> None:
            # Lightning reads hyperparameters from a given checkpoint while parsing: check it is intact first
            from jepa.preflight import check_checkpoint

            subcommand = self.config.get("subcommand")
            path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if path not in (None, "auto", "last", "hpc", "best"):
                check_checkpoint(path)
            super()._parse_ckpt_path()

        def before_fit(self) -> None:
            from jepa.preflight import preflight, resolve_auto_checkpoint

            preflight(self.trainer, self.model)  # unwritable folders, no room for a checkpoint: fail before compute
            config = self.config_init[self.subcommand]
            if config.get("ckpt_path") == "auto":
                config["ckpt_path"] = resolve_auto_checkpoint(self.trainer)


        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            for cb in trainer.callbacks:
                if isinstance(cb, RunRecord):
                    cb.config_text = getattr(self, "_config_text", None)
            return trainer

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
        if argv[0] in EXTRA_COMMANDS:
            module_name, func = EXTRA_COMMANDS[argv[0]][0].split(":")
            return int(getattr(importlib.import_module(module_name), func)(argv[1:]) or 0)
        if argv[0] not in LIGHTNING_COMMANDS:
            print(f"jepa: error: unknown command {argv[0]!r}\n\n{_overview()}", file=sys.stderr)
            return 2
        _check_config_files(argv)
        build_cli(argv)
    except SystemExit as exit_:
        if type(exit_).__name__ == "SIGTERMException":  # Lightning's exit after SIGTERM; PeriodicCheckpoint saved
            return 143  # 128 + SIGTERM: schedulers see an interrupted run, not a finished one
        raise
    except argparse.ArgumentError as err:  # a config or command line jsonargparse could not parse
        print(f"jepa: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - user errors arrive wrapped by jsonargparse; others are re-raised
        from jepa.module import NonFiniteTrainingError

        if isinstance(err, NonFiniteTrainingError):
            print(f"jepa: stopped: {err}", file=sys.stderr)
            return 1
        user_error = _find_config_error(err)
        if user_error is None:
            raise
        print(f"jepa: error: {user_error}", file=sys.stderr)
        return 2
    return 0


def _check_config_files(argv: list[str]) -> None:
    """--config files must exist and be valid YAML (jsonargparse would otherwise read a broken file as a
    string and report a misleading error further on)."""
    import yaml

    paths = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"--config {path}: no such file")
        try:
            with open(path) as f:
                yaml.safe_load(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"--config {path}: invalid YAML{where}: {problem}") from None


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
