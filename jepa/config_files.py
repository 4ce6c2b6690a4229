"""Config files of `jepa fit` and friends: checked before parsing, and composed from the bases they name.

A config may name the files it builds on, relative to itself: `bases: [../base/cpu.yaml]`. They are applied first,
in order (their own bases before them), then the config itself, exactly as if each had been given with its own
--config: jsonargparse merges them, later files winning key by key, so a variant holds only what differs.
(jsonargparse can nest a whole file under one key but has no "extend and override" for whole configs.)
"""
from __future__ import annotations

import os

import yaml

from jepa.errors import ConfigError

BASES_KEY = "bases"


def read_config(path: str) -> dict:
    """A config file's YAML, or a one-line ConfigError (jsonargparse would read a missing or broken file as a
    string and report a misleading error further on)."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"--config {path}: invalid YAML{where}: {problem}") from None
    return data if isinstance(data, dict) else {}


def config_chain(path: str, through: tuple[str, ...] = ()) -> list[str]:
    """The files to apply for one --config, bases first."""
    bases = read_config(path).get(BASES_KEY) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"--config {path}: `{BASES_KEY}` must be a list of config paths, got {bases!r}")
    chain = []
    for base in bases:
        base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
        if base_path in through + (os.path.normpath(path),):
            raise ConfigError(f"--config {path}: its bases come back to {base_path}")
        chain += [p for p in config_chain(base_path, through + (os.path.normpath(path),)) if p not in chain]
    return chain + [path]


def expand_configs(argv: list[str]) -> list[str]:
    """argv with every `--config FILE` replaced by `--config` for each file of its chain, and `bases` then cleared:
    they are applied, so a printed or saved config is the whole, merged one and re-runs without its base files."""
    out, i, expanded = [], 0, False
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            path, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            path, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        for file in config_chain(path):
            out += ["--config", file]
        expanded = True
    return out + [f"--{BASES_KEY}=null"] if expanded else out


def given_data_values(argv: list[str], keys: set[str]) -> dict[str, object]:
    """The values a user gave for data.<key> (in a config file of argv, or as a flag; the last one wins), so that a
    value the CLI would otherwise replace by a linked one can be refused instead."""
    given: dict[str, object] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            data = read_config(argv[i + 1]).get("data") or {}
            section = data.get("init_args", data) if isinstance(data, dict) else {}
            given.update({k: v for k, v in (section or {}).items() if k in keys})
            i += 2
            continue
        for key in keys:
            for flag in (f"--data.{key}", f"--data.init_args.{key}"):
                if arg == flag and i + 1 < len(argv):
                    given[key] = yaml.safe_load(argv[i + 1])
                elif arg.startswith(flag + "="):
                    given[key] = yaml.safe_load(arg.split("=", 1)[1])
        i += 1
    return given
