"""`jepa probe`: linear, kNN and attentive probes of a checkpoint's frozen encoder, beside random init, raw pixels
and any reference encoders (e.g. the supervised baseline), under identical protocols.

    jepa probe --ckpt runs/fmnist_full/checkpoints/last.ckpt --config configs/probe/fmnist.yaml

Writes results.json (every number, the settings, provenance), results.md (the table), confusion_matrix.png and
pca.png (test embeddings of the checkpoint's encoder) to --out (default: <run>/probe/).
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from eval.clip_probe import (
    CLIP_DATASETS,
    check_clip_compatible,
    clip_dataset,
    clip_table,
    probe_clip_rows,
)
from eval.feature_cache import FeatureCache
from eval.linear_probe import LinearProbeConfig
from eval.plots import plot_confusion, plot_pca
from eval.probe import (
    DATASETS,
    AttentiveConfig,
    KnnConfig,
    Row,
    check_compatible,
    checkpoint_row,
    markdown_table,
    probe_rows,
    public,
    random_init_row,
    settings,
)
from jepa.checkpoint import load_encoder
from jepa.errors import ConfigError
from jepa.io import write_json, write_text
from jepa.outputs import check_results_folder
from jepa.provenance import provenance

DEFAULT_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "jepa", "features")


def parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="jepa probe", description=__doc__)
    p.add_argument("--config", action=ActionConfigFile, help="a probe config, e.g. configs/probe/fmnist.yaml")
    p.add_argument("--ckpt", type=str, required=True, help="JEPA Lightning checkpoint (.ckpt) whose encoder to probe")
    p.add_argument("--which", type=str, default="target_encoder",
                   help="which encoder of the checkpoint: target_encoder (the EMA one, default) or encoder")
    p.add_argument("--data", type=str, default="fashion_mnist",
                   help=f"probe dataset: {', '.join(DATASETS)} (images), {', '.join(CLIP_DATASETS)} (clips: linear, "
                        "kNN and attentive probes on every label), or a clip dataset function's dotted path, e.g. "
                        "jepa_control.clip_labels.trajectory_clips (--data_root: the env's data folder)")
    p.add_argument("--data_root", type=str | None, default=None, help="dataset folder (default: the Debian package's)")
    p.add_argument("--garment", type=int | None, default=None,
                   help="moving_fmnist: garment side in pixels (default: the checkpoint's pretraining `data.garment`, "
                        "else Fashion-MNIST's 28)")
    p.add_argument("--train_limit", type=int, default=0, help="probe on the first N training images (0: all)")
    p.add_argument("--test_limit", type=int, default=0, help="score the first N test images (0: all)")
    p.add_argument("--protocols", type=list[str] | None, default=None,
                   help="pooling protocols of the linear probe: avg, avg+2x2, flat (default: avg, flat for images; "
                        "avg for clips, applied within each time slot)")
    p.add_argument("--layers", type=int, default=1, help="probe the last N layers concatenated (paper: 4)")
    p.add_class_arguments(LinearProbeConfig, "linear", help="linear probe settings")
    p.add_class_arguments(KnnConfig, "knn", help="kNN settings")
    p.add_class_arguments(AttentiveConfig, "attentive", help="attentive probe settings")
    p.add_argument("--random_init", type=bool, default=True, help="add a row with the same architecture at random init")
    p.add_argument("--pixels", type=bool, default=True, help="add a raw-pixel row (pixels cut into the same patches)")
    p.add_argument("--references", type=dict[str, str], default={},
                   help="more rows: name -> checkpoint, e.g. {supervised: runs/supervised_fmnist/checkpoints/last.ckpt}")
    p.add_argument("--cache_dir", type=str | None, default=DEFAULT_CACHE, help="feature cache folder (null: off)")
    p.add_argument("--out", type=str | None, default=None, help="output folder (default: <run folder>/probe)")
    p.add_argument("--overwrite", type=bool, default=False, help="replace the results of an earlier probe in --out")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init weights and of the probes")
    p.add_argument("--batch_size", type=int, default=256, help="images per batch during feature extraction")
    p.add_argument("--plots", type=bool, default=True, help="write confusion_matrix.png and pca.png")
    return p


def encoder_rows(cfg, ckpt: Path, encoder, hparams: dict, check) -> list[Row]:
    """The checkpoint's encoder, each --references encoder (checked against the data: check(encoder, its hparams,
    source)) and, with --random_init, the same architecture at random init."""
    rows = [checkpoint_row("jepa", ckpt, encoder, cfg.which)]
    for name, path in cfg.references.items():
        ref, ref_hparams = load_encoder(path, "auto")
        check(ref, ref_hparams, f"reference {name!r} ({path})")
        rows.append(checkpoint_row(name, path, ref, "auto"))
    if cfg.random_init:
        rows.append(random_init_row(hparams, cfg.seed))
    return rows


def default_out(ckpt: Path) -> Path:
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "probe"


def main(argv: list[str]) -> int:
    """linear, kNN and attentive probes of a checkpoint's frozen encoder"""
    p = parser()
    cfg = p.parse_args(argv)
    init = p.instantiate_classes(cfg)
    started = time.time()
    clips = None if cfg.data in DATASETS else clip_dataset(cfg.data)
    if cfg.data not in DATASETS and clips is None:
        raise ConfigError(f"--data {cfg.data!r} is not a probe dataset: choose one of "
                          f"{', '.join([*DATASETS, *CLIP_DATASETS])}, or the dotted path of a clip dataset function "
                          "(e.g. jepa_control.clip_labels.trajectory_clips)")
    if cfg.which not in ("target_encoder", "encoder"):
        raise ConfigError(f"--which must be target_encoder or encoder, got {cfg.which!r}")
    ckpt = Path(cfg.ckpt)
    out = Path(cfg.out) if cfg.out else default_out(ckpt)
    if ckpt.exists():  # (a missing checkpoint is named by the loader)
        check_results_folder("--out", out, cfg.overwrite)
    ran = {"command": "jepa probe " + shlex.join(argv), "date": time.strftime("%Y-%m-%d")}
    if clips is not None:
        cfg.protocols = cfg.protocols or ["avg"]
        return clip_main(cfg, init, ckpt, out, started, ran, clips)
    cfg.protocols = cfg.protocols or ["avg", "flat"]
    data = DATASETS[cfg.data](cfg.data_root, cfg.train_limit, cfg.test_limit)

    encoder, hparams = load_encoder(ckpt, cfg.which)
    check_compatible(encoder, data, f"{ckpt} [{cfg.which}]")
    rows = encoder_rows(cfg, ckpt, encoder, hparams, lambda enc, _, src: check_compatible(enc, data, src))
    if cfg.pixels:
        rows.append(Row("raw pixels", None, {"pixels": True}, hparams["patch_size"]))

    cache = FeatureCache(cfg.cache_dir)
    results = probe_rows(rows, data, cfg.protocols, cfg.layers, init.linear, init.knn, init.attentive, cache,
                         cfg.batch_size, cfg.seed)
    table = markdown_table(results, cfg.protocols, init.knn, cfg.layers)
    plots = {}
    if cfg.plots:
        main_row = results["jepa"]
        key = f"linear/{cfg.protocols[0]}"
        plots["confusion_matrix"] = str(plot_confusion(
            main_row["_predictions"][key], data.test_y, data.classes, out / "confusion_matrix.png",
            f"{ckpt.name}: linear probe ({cfg.protocols[0]}), test set"))
        plots["pca"] = str(plot_pca(main_row["_embeddings"], data.test_y, data.classes, out / "pca.png",
                                    f"{ckpt.name}: test embeddings ({cfg.protocols[0]}), 2-D PCA"))
    record = {
        "checkpoint": str(ckpt), "encoder": cfg.which, "data": cfg.data,
        "n_train": len(data.train_y), "n_test": len(data.test_y),
        "protocols": cfg.protocols, "layers": cfg.layers,
        "settings": settings(linear=init.linear, knn=init.knn, attentive=init.attentive),
        "rows": public(results), "table": table, "plots": plots,
        "feature_cache": {"dir": cfg.cache_dir, "hits": cache.hits, "misses": cache.misses},
        "wall_time_s": round(time.time() - started, 1), "provenance": provenance(), **ran,
    }
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", record)
    print(f"\n{table}\n\nfeature cache: {cache.hits} hits, {cache.misses} misses; "
          f"{record['wall_time_s']} s; wrote {out / 'results.json'}, {out / 'results.md'}"
          + (f", {', '.join(Path(v).name for v in plots.values())}" if plots else ""))
    return 0


def clip_main(cfg, init, ckpt: Path, out: Path, started: float, ran: dict, make_clips) -> int:
    """`jepa probe --data <clip dataset>`: linear and kNN probes on time-pooled clip tokens and attentive probes on
    all of them, for every label; rows: the checkpoint's encoder, --references (e.g. an image encoder applied frame
    by frame) and the same architecture at random init."""
    encoder, hparams = load_encoder(ckpt, cfg.which)
    num_frames = encoder.num_frames if encoder.is_video else 8
    # the clips the encoder was pretrained on, unless told otherwise
    garment = hparams["data"].get("garment") if cfg.garment is None else cfg.garment
    data = make_clips(cfg.data_root, cfg.train_limit, cfg.test_limit, num_frames=num_frames, size=encoder.img_size,
                      seed=cfg.seed, garment=garment)
    check_clip_compatible(encoder, data, f"{ckpt} [{cfg.which}]")
    rows = encoder_rows(cfg, ckpt, encoder, hparams,
                        lambda enc, hp, src: check_clip_compatible(enc, data, src, hp["data"].get("garment")))
    cache = FeatureCache(cfg.cache_dir)
    results = probe_clip_rows(rows, data, init.attentive, init.linear, init.knn, cache, cfg.seed,
                              protocols=tuple(cfg.protocols))
    labels = list(data.train_labels)
    table = clip_table(results, labels)
    record = {"checkpoint": str(ckpt), "encoder": cfg.which, "data": cfg.data, "clips": data.source, "labels": labels,
              "protocols": cfg.protocols,
              "n_train": len(data.train_x), "n_test": len(data.test_x),
              "settings": settings(linear=init.linear, knn=init.knn, attentive=init.attentive),
              "rows": results, "table": table,
              "feature_cache": {"dir": cfg.cache_dir, "hits": cache.hits, "misses": cache.misses},
              "wall_time_s": round(time.time() - started, 1), "provenance": provenance(), **ran}
    write_text(out / "results.md", table + "\n")
    write_json(out / "results.json", record)
    print(f"\n{table}\n\n{record['wall_time_s']} s; wrote {out / 'results.json'}, {out / 'results.md'}")
    return 0
