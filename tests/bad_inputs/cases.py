"""The bad-input cases: one row per (entry point, bad input). Each row builds the command line from bad files made
under a scratch folder and names the regular expression its one-line error must match.

To add a case: append a Case whose `argv(bad, env)` returns the `jepa` arguments; make new kinds of bad file in
files.py. The test runs every case and checks exit code 2, one error line matching `expect`, no traceback, and that
no file under the scratch folder changed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tests.bad_inputs.files import LEGACY_CKPT, OFFICIAL, BadFiles
from tests.helpers.run_jepa import CONFIG, ROOT, TINY_ARGS

WORLD_MODEL = ROOT / "configs" / "control" / "two_rooms.yaml"


@dataclass
class Env:
    root: Path          # scratch folder (also the working directory)
    fmnist: str         # Fashion-MNIST folder
    imported: Path      # a good 3-channel checkpoint (the official fixture, imported)

    def fit(self, *extra: str, run: Path | None = None) -> list[str]:
        return ["fit", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={self.fmnist}",
                f"--trainer.default_root_dir={run or self.root / 'run'}", "--trainer.max_steps=1", *extra]

    def validate(self, *extra: str) -> list[str]:
        return ["validate", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={self.fmnist}",
                f"--trainer.default_root_dir={self.root / 'val'}", *extra]

    def image_fit(self, folder: Path, *extra: str) -> list[str]:
        return self.fit("--data=data.ImageFolderDataModule", f"--data.train_dir={folder}", "--data.mean=[0.5]",
                        "--data.std=[0.5]", "--data.batch_size=2", "--data.num_workers=0", *extra)

    def world_model(self, train_dir: Path) -> list[str]:
        encoder = "--model.init_args.frozen_encoder.init_args."
        return ["fit", "--config", str(WORLD_MODEL), f"{encoder}path={LEGACY_CKPT}", f"{encoder}mean=[0.5]",
                f"{encoder}std=[0.5]", f"--data.train_dir={train_dir}", "--data.val_dir=null",
                f"--trainer.default_root_dir={self.root / 'wm'}", f"--data.cache_dir={self.root / 'cache'}"]

    def shard_fit(self, urls: str, *extra: str) -> list[str]:
        return self.fit("--data=data.shard_datamodule.ImageShardDataModule", f"--data.train_urls={urls}", "--data.mean=[0.5]",
                        "--data.std=[0.5]", "--data.batch_size=2", "--data.num_workers=0", *extra)


@dataclass
class Case:
    name: str
    argv: Callable[[BadFiles, Env], list[str]]
    expect: str


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


CKPT_KINDS = {  # every kind of bad checkpoint file, and the words its message must hold
    "truncated": (BadFiles.truncated, r"cannot be (read|used)"),
    "empty": (BadFiles.empty, r"cannot be (read|used)"),
    "foreign": (BadFiles.foreign, r"cannot be (read|used)"),
    "foreign_zip": (BadFiles.foreign_zip, r"cannot be (read|used)|not a"),
    "folder": (BadFiles.folder, r"is a folder|not an exported encoder"),
    "unsafe": (BadFiles.unsafe, r"posix.system.*do not load this file"),
    "missing": (BadFiles.missing, r"does not exist"),
}

CASES: list[Case] = []

for kind, (make, words) in CKPT_KINDS.items():
    CASES += [
        Case(f"plan --world_model {kind}", lambda b, e, m=make: ["plan", "--world_model", str(m(b)), "--episodes", "1",
                                                                  "--out", str(e.root / "plan")], words),
        Case(f"predict --ckpt {kind}", lambda b, e, m=make: ["predict", "--ckpt", str(m(b)), "--path", e.fmnist,
                                                              "--out", str(e.root / "embed")], words),
        Case(f"fit --ckpt_path {kind}", lambda b, e, m=make: e.fit(f"--ckpt_path={m(b)}"), words),
        Case(f"validate --ckpt_path {kind}", lambda b, e, m=make: e.validate(f"--ckpt_path={m(b)}"), words),
        Case(f"probe --ckpt {kind}", lambda b, e, m=make: ["probe", "--ckpt", str(m(b)), "--data", "fashion_mnist",
                                                            "--data_root", e.fmnist], words),
        Case(f"export --ckpt {kind}", lambda b, e, m=make: ["export", "--ckpt", str(m(b)), "--out",
                                                             str(e.root / "export")], words),
    ]

CASES += [
    # official checkpoints
    Case("import unsafe legacy pickle", lambda b, e: ["import", str(b.unsafe_legacy()), "--out", str(e.root / "i.ckpt")],
         r"refused by the safe loader.*do not load this file"),
    Case("import truncated", lambda b, e: ["import", str(b.truncated("t.pth.tar", OFFICIAL)), "--out",
                                           str(e.root / "i.ckpt")], r"cannot be read"),
    Case("import missing source", lambda b, e: ["import", str(b.missing("none.pth.tar")), "--out",
                                                str(e.root / "i.ckpt")], r"does not exist"),
    Case("import --out is a folder", lambda b, e: ["import", str(OFFICIAL), "--out", str(b.folder("out_dir"))],
         r"--out: .* is a folder"),
    Case("import --out exists", lambda b, e: ["import", str(OFFICIAL), "--out", str(b.file_named("kept.ckpt"))],
         r"already exists.*--overwrite"),
    Case("import --out under a file", lambda b, e: ["import", str(OFFICIAL), "--out",
                                                    str(b.file_named("plain") / "x.ckpt")], r"cannot write|is a file"),
    # exports: normalisation and output folders
    Case("export --mean without --std", lambda b, e: ["export", "--ckpt", str(e.imported), "--out",
                                                      str(e.root / "x"), "--mean", "0.5", "0.5", "0.5"],
         r"--mean and --std go together"),
    Case("export 1 value for 3 channels", lambda b, e: ["export", "--ckpt", str(e.imported), "--out", str(e.root / "x"),
                                                        "--mean", "0.5", "--std", "0.2"],
         r"--mean has 1 values but the encoder takes 3 channels"),
    Case("export zero std", lambda b, e: ["export", "--ckpt", str(e.imported), "--out", str(e.root / "x"), "--mean",
                                          "0.5", "0.5", "0.5", "--std", "0.2", "0", "0.2"], r"--std .* must be > 0"),
    Case("export nan mean", lambda b, e: ["export", "--ckpt", str(e.imported), "--out", str(e.root / "x"), "--mean",
                                          "nan", "0.5", "0.5", "--std", "0.2", "0.2", "0.2"], r"non-finite"),
    Case("export without recorded normalisation", lambda b, e: ["export", "--ckpt", str(b.legacy_copy()), "--out",
                                                                str(e.root / "x")], r"records no input normalisation"),
    Case("export --out is a file", lambda b, e: ["export", "--ckpt", str(e.imported), "--out",
                                                 str(b.file_named("notes.txt"))], r"--out: .* is a file"),
    Case("export --out not empty", lambda b, e: ["export", "--ckpt", str(e.imported), "--out",
                                                 str(b.earlier_run("full_dir"))], r"not empty.*--overwrite"),
    Case("export --out under a file", lambda b, e: ["export", "--ckpt", str(e.imported), "--out",
                                                    str(b.file_named("plain2") / "sub")], r"cannot write|is a file"),
    # configs
    Case("config missing", lambda b, e: ["fit", "--config", str(b.missing("none.yaml"))], r"none.yaml"),
    Case("config not YAML", lambda b, e: ["fit", "--config", str(b.text("bad.yaml", "model: [unclosed\n"))],
         r"bad.yaml"),
    Case("config is a folder", lambda b, e: ["fit", "--config", str(b.folder("conf_dir"))], r"conf_dir"),
    Case("config unknown key", lambda b, e: e.fit("--config", str(b.text("u.yaml", "model:\n  bogus_key: 1\n"))),
         r"bogus_key"),
    Case("config wrong type", lambda b, e: e.fit("--data.batch_size=many"), r"batch_size"),
    Case("config bases missing", lambda b, e: ["fit", "--config", str(b.text("b.yaml", "bases: [nowhere.yaml]\n"))],
         r"nowhere.yaml"),
    # image folders
    Case("image folder missing", lambda b, e: e.image_fit(b.missing("no_images")), r"no_images.*does not exist"),
    Case("image folder without classes", lambda b, e: e.image_fit(b.folder("empty_images")), r"empty_images"),
    Case("image folder of unreadable files", lambda b, e: e.image_fit(b.image_folder(
        "all_bad", {"a/x.png": b"", "a/y.jpg": b"\xff\xd8 not a jpeg", "b/z.png": _png()[:20]})),
         r"no image in the folder can be read"),
    # shards
    Case("shard missing", lambda b, e: e.shard_fit(str(b.missing("gone-000000.tar"))), r"gone-000000.tar does not exist"),
    Case("shard pattern matches nothing", lambda b, e: e.shard_fit(str(b.folder("no_tars"))), r"expands to no shards"),
    Case("shard without index or epoch_samples", lambda b, e: e.shard_fit(str(b.text("lone-000000.tar", ""))),
         r"epoch_samples is needed"),
    Case("pipe: shard without opt-in", lambda b, e: e.shard_fit("pipe:cat x.tar"), r"JEPA_ALLOW_PIPE"),
    # trajectory data (world models)
    Case("world model data missing", lambda b, e: e.world_model(b.missing("no_traj")), r"no trajectory shards"),
    Case("world model data unreadable", lambda b, e: e.world_model(b.image_folder("bad_traj", {"traj-000000.tar":
                                                                                               b"garbage" * 100})),
         r"no readable episodes \(damaged shards: traj-000000.tar"),
    # run folders
    Case("fit into another run's folder", lambda b, e: e.fit(run=b.earlier_run("earlier")),
         r"holds another run's results.*--ckpt_path auto.*--overwrite"),
    Case("fit root is a file", lambda b, e: e.fit(run=b.file_named("a_file")), r"is a file"),
    Case("quickstart into another run's folder", lambda b, e: ["quickstart", "--out", str(b.earlier_run("qs")),
                                                               "--data_root", e.fmnist], r"--out: .*holds another run"),
    Case("predict --out is a file", lambda b, e: ["predict", "--ckpt", str(e.imported), "--out",
                                                  str(b.file_named("out.txt"))], r"--out: .* is a file"),
    Case("predict unknown data", lambda b, e: ["predict", "--ckpt", str(e.imported), "--data", "nope", "--path",
                                               str(b.folder("somewhere")), "--out", str(e.root / "embed")], r"nope"),
    Case("predict image folder missing", lambda b, e: ["predict", "--ckpt", str(e.imported), "--data", "image_folder",
                                                       "--path", str(b.missing("no_dir")), "--out",
                                                       str(e.root / "embed")], r"no_dir"),
    Case("predict grey data for a colour encoder", lambda b, e: ["predict", "--ckpt", str(e.imported), "--path",
                                                                 e.fmnist, "--out", str(e.root / "embed")],
         r"expects 3-channel 16x16 images but Fashion-MNIST has 1-channel"),
    Case("collect --out is a file", lambda b, e: ["collect", "--out", str(b.file_named("c.txt")), "--episodes", "2",
                                                  "--steps", "4", "--quiet"], r"--out: .* is a file"),
    Case("collect --out holds shards", lambda b, e: ["collect", "--out", str(b.image_folder("c", {"traj-000000.tar":
                                                     b"x"})), "--episodes", "2", "--steps", "4", "--quiet"],
         r"already holds shards.*--overwrite"),
    Case("shards write --out holds shards", lambda b, e: ["shards", "write", "fashion_mnist", e.fmnist, "--out", str(
        b.image_folder("s", {"index.json": b"{}"})), "--quiet"], r"already holds shards.*--overwrite"),
    Case("shards write --out is a file", lambda b, e: ["shards", "write", "fashion_mnist", e.fmnist, "--out",
                                                       str(b.file_named("s.txt")), "--quiet"], r"--out: .* is a file"),
    Case("probe into earlier probe results", lambda b, e: ["probe", "--ckpt", str(e.imported), "--out",
                                                           str(b.image_folder("p", {"results.json": b"{}"}))],
         r"holds another run's results.*--overwrite true"),
    Case("probe on a foreign dataset name", lambda b, e: ["probe", "--ckpt", str(e.imported), "--data", "nope"],
         r"nope"),
]
