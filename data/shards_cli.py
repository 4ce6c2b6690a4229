"""`jepa shards write`: turn Fashion-MNIST, moving Fashion-MNIST clips, an image folder, a video folder or .npz
trajectories into tar shards."""
from __future__ import annotations

import argparse
import sys

from data.shard_sources import SOURCES, FashionMNISTSource, MovingFashionMNISTSource
from data.shard_writer import INDEX_NAME, prepare_shard_folder, write_shards


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepa shards", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    w = sub.add_parser("write", help="write NAME-%%06d.tar shards and index.json",
                       description="Write NAME-%06d.tar shards (atomically) and an index.json into --out.")
    w.add_argument("source", choices=sorted(SOURCES), help="what to read")
    w.add_argument("input", nargs="?", default=None,
                   help="folder to read (fashion_mnist: the idx folder, default the Debian package's)")
    w.add_argument("--out", required=True, help="output folder")
    w.add_argument("--name", default="shard", help="shard file-name prefix (default: shard)")
    w.add_argument("--split", default="train", choices=["train", "test", "eval"],
                   help="fashion_mnist: train or test; moving_fmnist: train (bouncing) or eval (8 labelled directions)")
    w.add_argument("--count", type=int, default=10_000, help="moving_fmnist: clips to write (default 10000)")
    w.add_argument("--num_frames", type=int, default=16, help="moving_fmnist: frames per clip (default 16)")
    w.add_argument("--garment", type=int, default=None,
                   help="moving_fmnist: garment side in pixels (default: Fashion-MNIST's 28)")
    w.add_argument("--max_count", type=int, default=10_000, help="most samples per shard (default 10000)")
    w.add_argument("--max_size", type=float, default=1e9, help="most bytes per shard, about (default 1e9)")
    w.add_argument("--seed", type=int, default=0, help="seed of the sample order written (default 0)")
    w.add_argument("--no_shuffle", action="store_true", help="keep the source's order")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.add_argument("--overwrite", action="store_true", help="replace the shards already in --out")
    return p


def main(argv: list[str]) -> int:
    """write WebDataset tar shards: jepa shards write SOURCE [INPUT] --out DIR"""
    args = parser().parse_args(argv)
    prepare_shard_folder(args.out, args.name, args.overwrite)
    seed = None if args.no_shuffle else args.seed
    if args.source == FashionMNISTSource.name:
        source = FashionMNISTSource(args.input, args.split, seed)
    elif args.source == MovingFashionMNISTSource.name:
        if args.split not in ("train", "eval"):
            parser().error("moving_fmnist --split must be train or eval")
        source = MovingFashionMNISTSource(args.input, args.split, args.seed, args.count, args.num_frames,
                                          args.garment)
    elif args.input is None:
        parser().error(f"{args.source} needs an input folder")
    else:
        source = SOURCES[args.source](args.input, seed)
    index = write_shards(iter(source), args.out, source.name, args.name, args.max_count, int(args.max_size),
                         total=len(source), extra=source.extra, progress=not args.quiet)
    print(f"wrote {index['total']} samples into {len(index['shards'])} shards {args.out}/{index['pattern']} "
          f"(index: {args.out}/{INDEX_NAME})", file=sys.stderr)
    return 0
