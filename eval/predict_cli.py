"""`jepa predict`: a checkpoint's (or export's) frozen encoder over every image of Fashion-MNIST, an image folder or
WebDataset shards, written as pooled and per-token embeddings with each sample's id (eval/predict.py).

    jepa predict --ckpt runs/fmnist_cpu/checkpoints/last.ckpt --data fashion_mnist --split test --out runs/embed

Ids: the index in the split (fashion_mnist), the file path relative to the folder (image_folder), the sample's
__key__ (shards). Inputs are normalised with --mean/--std, else with what the checkpoint recorded.
"""
from __future__ import annotations

import json
from pathlib import Path

from jepa.errors import ConfigError

SOURCES = ("fashion_mnist", "image_folder", "shards")


def parser():
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="jepa predict", description=__doc__)
    p.add_argument("--ckpt", type=str, required=True, help="checkpoint of this project or a `jepa export` folder")
    p.add_argument("--which", type=str, default="target_encoder", help="target_encoder, encoder or auto")
    p.add_argument("--data", type=str, default="fashion_mnist", help=f"one of {', '.join(SOURCES)}")
    p.add_argument("--path", type=str | None, default=None,
                   help="Fashion-MNIST folder (default: the Debian package's), image folder, or shard pattern")
    p.add_argument("--split", type=str, default="test", help="fashion_mnist: train or test")
    p.add_argument("--mean", type=list[float] | None, default=None, help="input normalisation mean, per channel")
    p.add_argument("--std", type=list[float] | None, default=None, help="input normalisation std, per channel")
    p.add_argument("--tokens", type=bool, default=True, help="also write every patch token (N x D per sample)")
    p.add_argument("--limit", type=int, default=0, help="only the first N samples (0: all)")
    p.add_argument("--batch_size", type=int, default=256, help="samples per batch")
    p.add_argument("--num_workers", type=int, default=0, help="dataloader workers")
    p.add_argument("--out", type=str, required=True, help="output folder")
    p.add_argument("--overwrite", type=bool, default=False, help="replace the files of a non-empty --out folder")
    return p


def normalisation_for(cfg, ckpt: Path, channels: int, checkpoint: dict | None) -> dict:
    """--mean/--std, else Fashion-MNIST's, else what the export or the checkpoint (already read: `checkpoint`)
    recorded."""
    from jepa.export import check_normalisation, read_export_config, recorded_normalisation

    given = check_normalisation(cfg.mean, cfg.std, channels)
    if given is not None:
        return given
    if cfg.data == "fashion_mnist":
        from data.fashion_mnist import MEAN, STD

        return {"mean": list(MEAN), "std": list(STD)}
    recorded = (read_export_config(ckpt if ckpt.is_dir() else ckpt.parent).get("normalisation")
                if checkpoint is None else recorded_normalisation(checkpoint))
    if recorded is None:
        raise ConfigError(f"--ckpt {ckpt} records no input normalisation: give --mean and --std")
    check_normalisation(recorded["mean"], recorded["std"], channels)
    return recorded


def dataset(cfg, encoder, norm: dict):
    """(dataset of (input, id), what it is) for --data."""
    from torch.utils.data import Subset

    from data.transforms import eval_transform
    from eval.predict import IdDataset

    size, channels = encoder.img_size, encoder.in_chans
    transform = eval_transform(norm["mean"], norm["std"], size=size)
    if cfg.data == "fashion_mnist":
        from data.fashion_mnist import TensorImageDataset, load_split

        images, labels = load_split(cfg.path, cfg.split)
        if (channels, size) != (1, 28):
            raise ConfigError(f"--ckpt: the encoder expects {channels}-channel {size}x{size} images but Fashion-MNIST "
                              "has 1-channel 28x28 images")
        data = IdDataset(TensorImageDataset(images, labels, transform), list(range(len(images))))
    elif cfg.data == "image_folder":
        from data.image_folder import TolerantImageFolder

        if cfg.path is None or not Path(cfg.path).is_dir():
            raise ConfigError(f"--path {cfg.path}: give an image folder (class sub-folders of images)")
        folder = TolerantImageFolder(cfg.path, transform, channels)
        data = IdDataset(folder, [str(Path(p).relative_to(cfg.path)) for p, _ in folder.samples])
    elif cfg.data == "shards":
        return shard_stream(cfg, transform, channels), f"shards {cfg.path}"
    else:
        raise ConfigError(f"--data {cfg.data!r}: choose one of {', '.join(SOURCES)}")
    if cfg.limit:
        data = Subset(data, range(min(cfg.limit, len(data))))
    split = cfg.split if cfg.data == "fashion_mnist" else None
    return data, " ".join(str(part) for part in (cfg.data, cfg.path, split) if part)


def shard_stream(cfg, transform, channels: int):
    """Every sample of the shards once, in file order, as (image, __key__); bad samples skipped and logged."""
    import itertools

    from torch.utils.data import IterableDataset

    from data.decoders import ImageDecoder
    from data.shard_datamodule import check_pipe_urls, index_counts
    from data.shard_stream import ShardStream, expand_urls

    urls = expand_urls(cfg.path) if cfg.path else []
    if not urls:
        raise ConfigError(f"--path {cfg.path!r} expands to no shards")
    check_pipe_urls(urls)
    missing = [u for u in urls if "://" not in u and not u.startswith("pipe:") and not Path(u).is_file()]
    if missing:
        raise ConfigError(f"shard {missing[0]} does not exist (--path)")
    decode = ImageDecoder(transform, channels)
    stream = ShardStream(urls, lambda raw, seed: (decode(raw, seed)[0], raw["__key__"]), shuffle=False,
                         repeat=False, expected=index_counts(urls))

    class Samples(IterableDataset):
        def __iter__(self):
            items = ((image, key) for image, key, _meta in stream)
            return itertools.islice(items, cfg.limit) if cfg.limit else items

    return Samples()


def main(argv: list[str]) -> int:
    """embeddings (pooled and per token, with ids) of a frozen encoder over a dataset"""
    import lightning as L

    from eval.predict import EmbeddingModule, EmbeddingWriter, loader
    from jepa.checkpoint import load_checkpoint, load_encoder
    from jepa.export import exported_weights
    from jepa.io import sha256_of
    from jepa.outputs import check_output_folder
    from jepa.provenance import provenance

    cfg = parser().parse_args(argv)
    ckpt = Path(cfg.ckpt)
    out = check_output_folder("--out", cfg.out, cfg.overwrite)
    exported = ckpt.is_dir() or ckpt.suffix == ".safetensors"
    checkpoint = None if exported else load_checkpoint(ckpt)  # read once: the encoder and its normalisation
    encoder, hparams = load_encoder(ckpt, cfg.which, ckpt=checkpoint)
    if encoder.is_video:
        raise ConfigError(f"--ckpt {ckpt} holds a video encoder; jepa predict embeds images")
    norm = normalisation_for(cfg, ckpt, encoder.in_chans, checkpoint)
    data, described = dataset(cfg, encoder, norm)
    weights = exported_weights(ckpt) if exported else ckpt
    metadata = {"encoder": {"checkpoint": str(ckpt), "sha256": sha256_of(weights), "which": cfg.which,
                            "embed_dim": encoder.embed_dim, "tokens_per_sample": encoder.grid ** 2},
                "data": described, "normalisation": norm, "tokens": cfg.tokens, "provenance": provenance(None)}
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out),
                        callbacks=[EmbeddingWriter(out, metadata)])
    trainer.predict(EmbeddingModule(encoder, cfg.tokens), loader(data, cfg.batch_size, cfg.num_workers),
                    return_predictions=False)
    samples = json.loads((out / "index.json").read_text())["samples"]
    print(f"embedded {samples} samples of {described} with {cfg.which} of {ckpt} -> "
          f"{out / 'index.json'} (+ {out / 'batches'})")
    return 0
