"""WebDataset shards: atomic writer, coverage, determinism, bad data, HTTP streaming, exact resume, DDP."""
from __future__ import annotations

import http.server
import io
import json
import signal
import subprocess
import sys
import tarfile
import threading
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import webdataset as wds
from lightning.pytorch.callbacks import ModelCheckpoint

from data.decoders import REASONS, TrajectoryDecoder
from data.shard_datamodule import TrajectoryShardDataModule
from data.shard_sources import trajectory_sample
from data.shard_stream import ShardStream
from data.shard_writer import write_shards
from jepa.errors import ConfigError
from tests.conftest import tiny_model, tiny_trainer
from tests.helpers.shard_helpers import (
    RecordIds,
    id_samples,
    ids_of_epoch,
    image_data,
    make_shards,
    png,
)

ROOT = Path(__file__).resolve().parents[2]


def test_writer_limits_and_index(tmp_path):
    index = write_shards(id_samples(25), tmp_path, "ids", name="x", max_count=10, progress=False)
    assert sorted(p.name for p in tmp_path.glob("x-*.tar")) == ["x-000000.tar", "x-000001.tar", "x-000002.tar"]
    assert [s["samples"] for s in index["shards"]] == [10, 10, 5] and index["total"] == 25
    assert index["keys"] == ["cls", "png"] and index["source"] == "ids"
    assert json.loads((tmp_path / "index.json").read_text())["shards"] == index["shards"]
    with tarfile.open(tmp_path / "x-000002.tar") as tar:
        assert tar.getnames()[:2] == ["000020.cls", "000020.png"]

    by_size = write_shards(id_samples(12), tmp_path / "small", "ids", max_size=len(png(0)) * 3, progress=False)
    assert all(s["samples"] <= 3 for s in by_size["shards"]) and by_size["total"] == 12


def test_writer_killed_mid_shard_leaves_no_partial_shard_under_a_final_name(tmp_path):
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from data.shard_writer import write_shards\n"
        "from tests.helpers.shard_helpers import id_samples\n"
        "def samples():\n"
        "    for i, s in enumerate(id_samples(100)):\n"
        "        if i == 15:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        yield s\n"
        f"write_shards(samples(), {str(tmp_path)!r}, 'ids', max_count=10, progress=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.glob("shard-*.tar")) == ["shard-000000.tar"]
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        assert len(tar.getnames()) == 20  # the finished shard is complete: 10 samples x 2 members
    assert list(tmp_path.glob(".shard-000001.tar.partial")) and not (tmp_path / "index.json").exists()
    write_shards(id_samples(5), tmp_path, "ids", progress=False)  # a new write clears the stale partial
    assert not list(tmp_path.glob("*.partial"))


def test_epoch_covers_every_sample_once_and_reshuffles(tmp_path):
    dm = image_data(make_shards(tmp_path, n=80, per_shard=10), num_workers=2)
    dm.setup()
    first, second = ids_of_epoch(dm), ids_of_epoch(dm)
    assert sorted(first) == list(range(80)) and sorted(second) == list(range(80))
    assert first != second, "the second epoch repeated the first one's order"


def test_order_and_augmentation_come_from_the_seed(tmp_path):
    urls = make_shards(tmp_path, n=40, per_shard=10)

    def epoch(seed):
        dm = image_data(urls, seed=seed, num_workers=1, crop_scale=(0.2, 0.5))
        images = [dm.strip(b)[0][0] for b in dm.train_dataloader()]
        return ids_of_epoch(image_data(urls, seed=seed, num_workers=1)), torch.cat(images)

    (ids_a, images_a), (ids_b, images_b), (ids_c, _) = epoch(0), epoch(0), epoch(1)
    assert ids_a == ids_b and torch.equal(images_a, images_b)
    assert ids_a != ids_c


def bad_shards(folder: Path) -> tuple[str, set[int], dict[str, int]]:
    """Shards with one bad sample of each kind, a garbage shard and a truncated shard; (urls, good ids, counts)."""
    folder.mkdir()
    good = set(range(30))
    with wds.TarWriter(str(folder / "a-000000.tar"), encoder=False) as tar:
        for i in range(0, 15):
            tar.write({"__key__": f"{i:06d}", "png": png(i), "cls": str(i).encode()})
        tar.write({"__key__": "truncated", "png": png(3)[:40], "cls": b"100"})
        tar.write({"__key__": "zerobyte", "png": b"", "cls": b"101"})
        tar.write({"__key__": "nokey", "cls": b"102"})
    with wds.TarWriter(str(folder / "a-000001.tar"), encoder=False) as tar:
        for i in range(15, 30):
            tar.write({"__key__": f"{i:06d}", "png": png(i), "cls": str(i).encode()})
    (folder / "a-000002.tar").write_bytes(b"this is not a tar file" * 50)
    buffer = io.BytesIO()
    with wds.TarWriter(buffer, encoder=False) as tar:
        for i in range(200, 210):
            tar.write({"__key__": f"{i:06d}", "png": png(i), "cls": str(i).encode()})
    (folder / "a-000003.tar").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    counts = {"missing_key": 1, "empty": 1, "decode": 1, "shape": 0, "shard": 2}
    return f"{folder}/a-{{000000..000003}}.tar", good, counts


def test_bad_samples_are_skipped_counted_and_good_ones_all_arrive(tmp_path, caplog):
    urls, good, counts = bad_shards(tmp_path / "bad")
    dm = image_data(urls, num_workers=0, epoch_samples=30)
    ids, counts_seen = set(), None
    for _, label, meta in ShardStream(dm.train_list, dm.decoder(train=True), shuffle=False, repeat=True):
        if meta[1] == 1:  # the first sample of pass 1 carries the counts of all of pass 0
            counts_seen = dict(zip(REASONS, meta[4:].tolist()))
            break
        ids.add(int(label))
    assert good <= ids and ids - good <= set(range(200, 210)) and ids - good  # samples before the damage arrive
    assert counts_seen == counts
    logged = caplog.text
    assert "truncated" in logged and "a-000000.tar" in logged and "a-000002.tar" in logged


def test_training_survives_bad_data_and_reports_it_at_epoch_end(tmp_path):
    urls, good, counts = bad_shards(tmp_path / "bad")
    dm = image_data(urls, num_workers=2, epoch_samples=32)
    with pytest.warns(UserWarning, match=r"epoch 0: skipped \d+ bad samples"):
        tiny_trainer(tmp_path, max_epochs=1).fit(tiny_model(), datamodule=dm)
    report = dm.epoch_reports[0]
    assert report["missing_key"] + report["empty"] + report["decode"] >= 1 and sum(report.values()) >= 1


def test_shards_stream_over_http(tmp_path):
    pattern = make_shards(tmp_path, n=40, per_shard=10)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{Path(pattern).name}"
        dm = image_data(url, num_workers=2)  # epoch length read from index.json over HTTP
        assert dm.epoch_samples == 40
        assert sorted(ids_of_epoch(dm)) == list(range(40))
    finally:
        server.shutdown()


class StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        trainer.should_stop = trainer.global_step >= self.step


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_continues_exactly_where_training_stopped(tmp_path, workers):
    urls = make_shards(tmp_path / "shards", n=80, per_shard=10)
    data = partial(image_data, urls, num_workers=workers, epoch_samples=40)  # 10 steps per epoch

    straight = RecordIds()
    model_a = tiny_model(seed=0)
    tiny_trainer(tmp_path / "a", max_steps=14, callbacks=[straight]).fit(model_a, datamodule=data())

    first = RecordIds()  # same run, stopped right after the checkpoint at step 6 (as if killed there)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=6, save_top_k=-1)
    tiny_trainer(tmp_path / "b", max_steps=14, callbacks=[first, StopAt(6), ckpt], enable_checkpointing=True).fit(
        tiny_model(seed=0), datamodule=data())
    resumed = RecordIds()
    model_b = tiny_model(seed=0)
    path = next((tmp_path / "ckpt").glob("*.ckpt"))
    tiny_trainer(tmp_path / "c", max_steps=14, callbacks=[resumed]).fit(model_b, datamodule=data(), ckpt_path=path)

    assert first.ids + resumed.ids == straight.ids  # no replay, no gap, same order across the epoch boundary
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key


def test_trajectory_windows_and_bad_shapes(tmp_path):
    rng = np.random.default_rng(0)
    samples = [trajectory_sample(f"{i:04d}", rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
                                 rng.normal(size=(5, 2)).astype(np.float32), rng.normal(size=(6, 3)))
               for i in range(6)]
    samples.insert(0, trajectory_sample("bad", np.zeros((6, 8, 8, 3), np.uint8), np.zeros((2, 2), np.float32)))
    index = write_shards(iter(samples), tmp_path, "traj", max_count=4, progress=False)
    dm = TrajectoryShardDataModule(f"{tmp_path}/{index['pattern']}", num_frames=3, batch_size=2, num_workers=0,
                                   epoch_samples=6)
    batch, meta = dm.strip(next(iter(dm.train_dataloader())))
    assert batch["frames"].shape == (2, 3, 3, 8, 8) and batch["actions"].shape == (2, 2, 2)
    assert batch["proprio"].shape == (2, 3, 3) and batch["frames"].dtype == torch.float32
    stream = ShardStream(dm.train_list, TrajectoryDecoder(lambda x: x, 3), shuffle=False, repeat=False)
    rows = [item["__meta__"] for item in stream]
    assert len(rows) == 6 and rows[-1][4 + REASONS.index("shape")] == 1


def test_configuration_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        image_data(str(tmp_path / "missing-{000000..000001}.tar"))
    urls = make_shards(tmp_path, n=20, per_shard=10)
    (tmp_path / "index.json").unlink()
    with pytest.raises(ConfigError, match="epoch_samples"):
        image_data(urls)


def test_ddp_two_ranks_two_workers_uneven_shards(tmp_path):
    """7 shards over 2 ranks x 2 workers: equal steps per rank (no hang), and within each pass every sample is
    read exactly once across ranks and workers."""
    from tests.helpers.two_ranks import run_two_ranks

    urls = make_shards(tmp_path / "shards", n=70, per_shard=10)
    proc = run_two_ranks("ddp_shards.py", urls, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert len(ranks[0]["ids"]) == len(ranks[1]["ids"]) == 3 * 8 * 4  # 3 epochs x 8 steps x 4 on each rank
    for pass_ in (0, 1):
        ids = [i for r in ranks for i, p in zip(r["ids"], r["passes"]) if p == pass_]
        if pass_ == 0:
            assert sorted(ids) == list(range(70)), "pass 0 was not read exactly once across ranks and workers"
        assert len(ids) == len(set(ids)), f"a sample repeated within pass {pass_}"
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["Recording"]
    assert sorted(state["positions"]) == ["0", "1", "2", "3"]  # every rank's workers are in the checkpoint


def test_video_folder_to_shards_to_clips(tmp_path):
    from data.shard_datamodule import ClipShardDataModule
    from data.shards_cli import main as shards_main
    from data.video import encode_mp4

    rng = np.random.default_rng(0)
    for label in ("left", "right"):
        (tmp_path / "videos" / label).mkdir(parents=True)
        for i in range(2):  # static clips: one crop for the whole clip keeps every frame identical
            frame = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
            (tmp_path / "videos" / label / f"{i}.mp4").write_bytes(encode_mp4(np.repeat(frame, 12, axis=0)))
    (tmp_path / "videos" / "left" / "short.mp4").write_bytes(encode_mp4(np.zeros((3, 32, 32, 3), np.uint8)))
    assert shards_main(["write", "videos", str(tmp_path / "videos"), "--out", str(tmp_path / "shards"),
                        "--max_count", "2", "--quiet", "--no_shuffle"]) == 0
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["total"] == 5 and index["classes"] == ["left", "right"] and len(index["shards"]) == 3

    dm = ClipShardDataModule(f"{tmp_path}/shards/{index['pattern']}", img_size=16, num_frames=4, frame_step=2,
                             batch_size=2, num_workers=0, mean=(0.5,) * 3, std=(0.5,) * 3)
    items = list(ShardStream(dm.train_list, dm.decoder(train=True), shuffle=False, repeat=False))
    clips = torch.stack([clip for clip, _, _ in items])
    assert clips.shape == (4, 4, 3, 16, 16)
    assert (clips - clips[:, :1]).abs().max() < 0.05, "frames of one clip were cropped differently"
    assert sorted({int(label) for _, label, _ in items}) == [0, 1]
    assert items[-1][2][4 + REASONS.index("shape")] == 1  # the 3-frame video (3rd in file order) is too short
