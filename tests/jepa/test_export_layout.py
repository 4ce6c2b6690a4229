"""Exports in timm's Hugging Face layout: timm's own loader builds them with equal features, huggingface_hub's mixin
saves, loads and pushes them (offline, to a local folder), the normalisation travels from the training data, and
export folders of the earlier layout still load."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from jepa.checkpoint import load_encoder
from jepa.cli import main
from jepa.export import FORMAT, LEGACY_FORMAT
from jepa.hub import JepaEncoder
from jepa.vit import VisionTransformer
from tests.bad_inputs.files import OFFICIAL
from tests.helpers.run_jepa import CONFIG, TINY_ARGS

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "official.ckpt"
    assert main(["import", str(OFFICIAL), "--out", str(out), "--num_heads", "2"]) == 0
    return out


def test_an_export_loads_in_timm_with_equal_features(imported, tmp_path):
    import timm

    assert main(["export", "--ckpt", str(imported), "--out", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert (tmp_path / "export" / "model.safetensors").is_file()
    assert timm.is_model(config["architecture"]) and config["model_args"]["class_token"] is False
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 16, 16] and {"mean": cfg["mean"], "std": cfg["std"]} == IMAGENET  # the official's
    assert config["jepa"]["format"] == FORMAT and "CC-BY-NC" in config["jepa"]["licence"]

    model = timm.create_model(f"local-dir:{tmp_path / 'export'}", pretrained=True).eval()
    encoder, _ = load_encoder(imported)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert (model.forward_features(x) - encoder(x)).abs().max() <= 1e-6
        assert (model(x) - encoder(x).mean(1)).abs().max() <= 1e-6
    data_config = timm.data.resolve_data_config({}, model=model)
    assert list(data_config["mean"]) == IMAGENET["mean"] and data_config["input_size"] == (3, 16, 16)


def test_a_trained_checkpoint_exports_the_normalisation_it_was_trained_with(tmp_path, fmnist_root):
    from data.fashion_mnist import MEAN, STD

    run = tmp_path / "run"
    assert main(["fit", "--config", str(CONFIG), *TINY_ARGS, f"--data.root={fmnist_root}", "--trainer.max_steps=2",
                 f"--trainer.default_root_dir={run}", "--trainer.logger=false"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")]) == 0
    cfg = json.loads((tmp_path / "export" / "config.json").read_text())["pretrained_cfg"]
    assert cfg["mean"] == list(MEAN) and cfg["std"] == list(STD) and cfg["input_size"] == [1, 28, 28]
    # asked again into the same folder: refused unless told to replace it
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")]) == 2
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export"), "--overwrite", "--mean", "0.1",
                 "--std", "0.2"]) == 0
    cfg = json.loads((tmp_path / "export" / "config.json").read_text())["pretrained_cfg"]
    assert cfg["mean"] == [0.1] and cfg["std"] == [0.2]  # given values win over recorded ones


def test_hub_mixin_saves_loads_and_pushes_offline(imported, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    assert main(["export", "--ckpt", str(imported), "--out", str(tmp_path / "export")]) == 0
    model = JepaEncoder.from_pretrained(str(tmp_path / "export"))
    assert model.normalisation == IMAGENET and model.metadata["source"]["which"] == "target_encoder"
    model.save_pretrained(tmp_path / "saved")
    again = JepaEncoder.from_pretrained(str(tmp_path / "saved"))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(again(x), model(x)) and again.pooled(x).shape == (2, 32)

    hub = tmp_path / "hub"  # push_to_hub's upload lands in a local folder: no network
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, *, repo_id, folder_path, **kw:
                        shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True))
    model.push_to_hub("user/tiny-ijepa")
    pushed = JepaEncoder.from_pretrained(str(hub / "user" / "tiny-ijepa"))
    with torch.no_grad():
        assert torch.equal(pushed(x), model(x))
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in (hub / "user/tiny-ijepa").iterdir()}


def test_export_folders_of_the_earlier_layout_still_load(tmp_path):
    from safetensors.torch import save_file

    encoder = VisionTransformer(16, 4, 1, 32, 2, 2).eval()
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(folder / "encoder.safetensors"))
    args = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "depth": 2, "num_heads": 2}
    (folder / "config.json").write_text(json.dumps({"format": LEGACY_FORMAT, "args": args, "pooling": "avg",
                                                     "normalisation": None, "source": {}, "licence": None}))
    x = torch.randn(2, 1, 16, 16)
    loaded, _ = load_encoder(folder)
    model = JepaEncoder.from_pretrained(str(folder))
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x)) and torch.equal(model(x), encoder(x))


def test_a_video_export_says_timm_cannot_build_it(tmp_path):
    from jepa.export import export_encoder

    video = VisionTransformer(16, 4, 1, 32, 2, 2, num_frames=4, tubelet_size=2)
    export_encoder(video, tmp_path / "video", {}, None, [0.5], [0.5])
    config = json.loads((tmp_path / "video" / "config.json").read_text())
    assert config["architecture"] is None and config["jepa"]["args"]["num_frames"] == 4
    assert load_encoder(tmp_path / "video")[0].is_video


def test_random_init_export_is_the_same_architecture_with_seeded_fresh_weights(imported, tmp_path):
    trained, _ = load_encoder(imported)
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(["export", "--ckpt", str(imported), "--out", str(tmp_path / name), "--random_init", seed]) == 0
    a, b, c = (load_encoder(tmp_path / name)[0].state_dict() for name in "abc")
    assert a.keys() == trained.state_dict().keys()
    assert all(a[k].shape == v.shape for k, v in trained.state_dict().items())
    assert all(torch.equal(a[k], b[k]) for k in a)  # the seed decides the weights
    weights = [k for k in a if k.endswith("weight") and a[k].dim() == 2]
    assert not any(torch.equal(a[k], c[k]) for k in weights)
    assert not any(torch.equal(a[k], trained.state_dict()[k]) for k in weights)  # not the trained weights
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["jepa"]["source"]["random_init_seed"] == 0
