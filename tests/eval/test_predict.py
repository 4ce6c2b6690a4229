"""`jepa predict`: every sample's pooled and per-token embedding with its id, equal to the encoder's own output, for
Fashion-MNIST, an image folder (bad files skipped) and shards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eval.predict import read_embeddings
from jepa.checkpoint import load_encoder
from jepa.cli import main
from tests.bad_inputs.files import LEGACY_CKPT, OFFICIAL
from tests.helpers.shard_helpers import make_shards


@pytest.fixture(scope="module")
def grey_ckpt(tmp_path_factory, fmnist_root):
    """A 1-channel 28 px checkpoint of this project, one step into training on Fashion-MNIST."""
    from tests.helpers.run_jepa import CONFIG, TINY_ARGS

    run = tmp_path_factory.mktemp("grey")
    assert main(["fit", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={fmnist_root}", "--trainer.max_steps=1",
                 f"--trainer.default_root_dir={run}", "--trainer.logger=false"]) == 0
    return run / "checkpoints" / "last.ckpt"


def test_an_encoder_for_other_images_is_refused_on_fashion_mnist(tmp_path, fmnist_root, capsys):
    ckpt = tmp_path / "official.ckpt"
    assert main(["import", str(OFFICIAL), "--out", str(ckpt), "--num_heads", "2"]) == 0  # 3-channel, 16 px
    assert main(["predict", "--ckpt", str(ckpt), "--data", "fashion_mnist", "--path", fmnist_root,
                 "--out", str(tmp_path / "embed")]) == 2
    assert "expects 3-channel 16x16 images but Fashion-MNIST has 1-channel 28x28" in capsys.readouterr().err


def test_grey_encoder_over_fashion_mnist_image_folder_and_shards(tmp_path, fmnist_root, grey_ckpt):
    from data.fashion_mnist import MEAN, STD, load_split
    from data.transforms import eval_transform

    encoder, _ = load_encoder(grey_ckpt)
    size = encoder.img_size
    out = tmp_path / "fmnist"
    assert main(["predict", "--ckpt", str(grey_ckpt), "--data", "fashion_mnist", "--path", fmnist_root, "--limit",
                 "20", "--batch_size", "8", "--out", str(out)]) == 0
    got = read_embeddings(out)
    assert got["ids"] == [str(i) for i in range(20)] and got["index"]["samples"] == 20
    images = load_split(fmnist_root, "test")[0][:20]
    x = torch.stack([eval_transform(MEAN, STD, size=size)(im) for im in images])
    with torch.no_grad():
        tokens = encoder(x)
    assert (got["tokens"] - tokens).abs().max() <= 1e-6 and (got["pooled"] - tokens.mean(1)).abs().max() <= 1e-6

    folder = tmp_path / "images"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20), 30 * i, np.uint8)).save(folder / c / f"{i}.png")
    (folder / "a" / "9_broken.png").write_bytes(b"")
    assert main(["predict", "--ckpt", str(grey_ckpt), "--data", "image_folder", "--path", str(folder), "--mean",
                 "[0.5]", "--std", "[0.5]", "--tokens", "false", "--out", str(tmp_path / "folder")]) == 0
    got = read_embeddings(tmp_path / "folder")
    assert got["tokens"] is None and got["pooled"].shape == (7, encoder.embed_dim)  # the broken file's slot refilled
    assert set(got["ids"]) >= {"a/0.png", "b/2.png"}

    pattern = make_shards(tmp_path / "shards", n=12, per_shard=5)
    assert main(["predict", "--ckpt", str(grey_ckpt), "--data", "shards", "--path", pattern, "--mean", "[0.5]",
                 "--std", "[0.5]", "--out", str(tmp_path / "from_shards"), "--batch_size", "4"]) == 0
    got = read_embeddings(tmp_path / "from_shards")
    assert sorted(got["ids"]) == [f"{i:06d}" for i in range(12)] and got["tokens"].shape[0] == 12


def test_predict_refuses_an_existing_output_and_a_missing_normalisation(tmp_path, grey_ckpt, capsys):
    (tmp_path / "images" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / "a" / "x.png")
    assert main(["predict", "--ckpt", str(LEGACY_CKPT), "--data", "image_folder", "--path",
                 str(tmp_path / "images"), "--out", str(tmp_path / "o")]) == 2
    assert "records no input normalisation" in capsys.readouterr().err  # saved before checkpoints recorded it
    assert not (tmp_path / "o").exists()  # a refused command creates nothing
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    assert main(["predict", "--ckpt", str(grey_ckpt), "--data", "image_folder", "--path", str(tmp_path / "images"),
                 "--mean", "[0.5]", "--std", "[0.5]", "--out", str(tmp_path / "o")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "o" / "keep.txt").read_text() == "mine"
