"""Bad samples inside good data are skipped, logged and counted, never a crash: image folders (corrupt, zero-byte,
truncated, decompression-bomb files; odd modes decode), and shards cut at every kind of boundary, checked against
their index.json."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from data.decoders import REASONS, read_image
from data.image_folder import ImageFolderDataModule
from data.shard_stream import ShardStream
from tests.helpers.shard_helpers import image_data, make_shards


def _save(path, image: Image.Image, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def image_folder(root) -> dict[str, str]:
    """Good files and one of every bad kind, never two bad ones next to each other in ImageFolder's order (so each
    is passed over exactly once per pass); returns the bad files' names with their reason."""
    grey = Image.fromarray(np.full((20, 20), 90, np.uint8))
    for c in ("a", "b"):
        for i in range(0, 10, 2):
            _save(root / c / f"{i}.png", grey, "PNG")
    good_jpeg = io.BytesIO()
    grey.convert("RGB").save(good_jpeg, format="JPEG")
    (root / "a" / "1_zero.png").write_bytes(b"")
    (root / "a" / "3_truncated.jpg").write_bytes(good_jpeg.getvalue()[: len(good_jpeg.getvalue()) // 2])
    (root / "a" / "5_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _save(root / "b" / "1_bomb.png", Image.new("1", (12000, 8000)), "PNG")  # > PIL's 89.5 M pixel limit
    _save(root / "b" / "3_cmyk.jpg", Image.new("CMYK", (20, 20)), "JPEG")  # odd modes are fine
    _save(root / "b" / "5_palette.png", Image.new("P", (20, 20)), "PNG")
    _save(root / "b" / "7_16bit.png", Image.new("I;16", (20, 20)), "PNG")
    _save(root / "b" / "9_rgba.png", Image.new("RGBA", (20, 20)), "PNG")
    return {"1_zero.png": "empty", "3_truncated.jpg": "decode", "5_garbage.png": "decode", "1_bomb.png": "decode"}


@pytest.mark.parametrize("channels", [1, 3])
def test_every_kind_of_bad_image_is_passed_over_and_counted_by_reason(tmp_path, caplog, channels):
    bad = image_folder(tmp_path)
    mean = (0.5,) * channels
    dm = ImageFolderDataModule(str(tmp_path), img_size=16, batch_size=2, num_workers=0, mean=mean, std=mean)
    dataset = dm.train_set
    images = [dataset[i][0] for i in range(len(dataset))]
    assert all(x.size == (20, 20) and x.mode == ("L" if channels == 1 else "RGB") for x in images)
    counts = dict(zip(("empty", "decode"), dm.close_epoch()))
    assert counts == {"empty": 1, "decode": 3}
    logged = {name for name in bad if name in caplog.text}
    assert logged == set(bad)
    assert dm.close_epoch() == [0, 0]  # counted once, then the next epoch starts from zero


def test_training_on_an_image_folder_with_bad_files_reports_them(tmp_path):
    from tests.conftest import tiny_model, tiny_trainer

    image_folder(tmp_path / "images")
    dm = ImageFolderDataModule(str(tmp_path / "images"), img_size=16, batch_size=4, num_workers=2, mean=(0.5,),
                               std=(0.5,))
    with pytest.warns(UserWarning, match=r"epoch 0: skipped \d+ bad samples"):
        tiny_trainer(tmp_path, max_epochs=1).fit(tiny_model(), datamodule=dm)
    assert sum(dm.epoch_reports[0].values()) >= 1


def test_a_bomb_is_refused_before_it_is_decoded(tmp_path):
    _save(tmp_path / "bomb.png", Image.new("1", (20000, 20000)), "PNG")  # 400 M pixels: PIL's error, not a warning
    with pytest.raises(Exception, match="decode: .*bomb"):
        read_image(str(tmp_path / "bomb.png"), 1)


def _members(path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def cut_points(shard) -> dict[str, tuple[int, int]]:
    """(byte offset, samples whole before it) for each kind of cut of a shard of 10 two-member samples
    (.cls, .png in that order)."""
    members = _members(shard)
    sample_end = members[5].offset_data + ((members[5].size + 511) // 512) * 512  # after sample 2's .png
    return {
        "block boundary between samples": (sample_end, 3),
        "block boundary inside a sample": (members[6].offset_data + 512, 3),  # after sample 3's .cls
        "inside a member's data": (members[7].offset_data + 100, 3),
        "inside a tar header": (members[8].offset + 100, 4),
        "header only, no data": (members[9].offset_data, 4),
    }


@pytest.mark.parametrize("kind", ["block boundary between samples", "block boundary inside a sample",
                                  "inside a member's data", "inside a tar header", "header only, no data"])
def test_a_cut_shard_delivers_what_precedes_the_cut_and_counts_the_rest(tmp_path, kind, caplog):
    urls = make_shards(tmp_path, n=20, per_shard=10)
    dm = image_data(urls, num_workers=0)
    shard = dm.train_list[0]
    offset, whole = cut_points(shard)[kind]
    data = open(shard, "rb").read()
    open(shard, "wb").write(data[:offset])
    stream = ShardStream(dm.train_list, dm.decoder(train=False), shuffle=False, repeat=False,
                         expected=[10, 10])
    ids, last_meta = [], None
    for _, label, meta in stream:
        ids.append(int(label))
        last_meta = meta
    first = sorted(i for i in ids if i < 10)
    assert first[:whole] == list(range(whole))  # the samples before the cut all arrive
    assert sorted(i for i in ids if i >= 10) == list(range(10, 20))  # the intact shard is untouched
    skipped = dict(zip(REASONS, last_meta[4:].tolist()))
    assert sum(skipped.values()) == 10 - len(first) and skipped["shard"] >= 1  # every missing sample counted once
    # (a sample cut after its .cls arrives without its image: counted under missing_key, the rest under shard)
    assert "a-000000.tar" in caplog.text or "000000" in caplog.text
