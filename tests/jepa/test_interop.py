"""Official I-JEPA checkpoints in (equal outputs to the official model code), encoders out (safetensors, timm)."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepa.checkpoint import load_encoder
from jepa.cli import main as jepa
from jepa.errors import ConfigError
from jepa.export import to_timm
from jepa.interop import import_official_ijepa
from jepa.vit import Predictor

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OFFICIAL = FIXTURES / "official_ijepa_tiny.pth.tar"  # made by tests/fixtures/make_official_ijepa_fixture.py


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURES / "official_ijepa_tiny_io.pt", weights_only=True)


def test_imported_modules_match_the_official_code(tmp_path, reference):
    out = tmp_path / "imported.ckpt"
    assert jepa(["import", str(OFFICIAL), "--out", str(out), "--num_heads", "2"]) == 0
    x, ctx, targets, want = reference["inputs"], reference["context"], reference["targets"], reference["outputs"]
    encoder, hp = load_encoder(out, "encoder")
    target, _ = load_encoder(out)  # the EMA target encoder by default
    assert {k: hp[k] for k in reference["hparams"]} == reference["hparams"]
    state = torch.load(out, weights_only=True)["state_dict"]
    predictor = Predictor(hp["img_size"] // hp["patch_size"], hp["embed_dim"], hp["predictor_embed_dim"],
                          hp["predictor_depth"], hp["num_heads"]).eval()
    predictor.load_state_dict({k[len("predictor."):]: v for k, v in state.items() if k.startswith("predictor.")})
    with torch.no_grad():
        diffs = {
            "encoder_full": (encoder(x) - want["encoder_full"]).abs().max(),
            "target_encoder_full": (target(x) - want["target_encoder_full"]).abs().max(),
            "encoder_context": (encoder(x, ctx) - want["encoder_context"]).abs().max(),
            "predictor": (predictor(want["encoder_context"], ctx, targets) - want["predictor"]).abs().max(),
        }
    assert all(d <= 1e-5 for d in diffs.values()), diffs
    assert (want["encoder_full"] - want["target_encoder_full"]).abs().max() > 1e-3  # the fixture tells them apart
    assert "CC-BY-NC" in torch.load(out, weights_only=True)["imported_from"]["licence"]


def _official():
    return torch.load(OFFICIAL, weights_only=True)


def test_import_refuses_missing_unexpected_and_foreign_keys(tmp_path):
    missing = _official()
    del missing["target_encoder"]["module.norm.weight"]
    torch.save(missing, tmp_path / "missing.pth.tar")
    with pytest.raises(ConfigError, match=r"\[target_encoder\] does not match the model: missing keys \['norm.weight'\]"):
        import_official_ijepa(tmp_path / "missing.pth.tar", num_heads=2)

    extra = _official()
    extra["predictor"]["module.predictor_blocks.0.attn.extra"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth.tar")
    with pytest.raises(ConfigError, match=r"unexpected keys \['predictor_blocks.0.attn.extra'\]"):
        import_official_ijepa(tmp_path / "extra.pth.tar", num_heads=2)

    torch.save({"state_dict": {}}, tmp_path / "ours.ckpt")
    with pytest.raises(ConfigError, match="not an official I-JEPA / V-JEPA checkpoint: it needs the keys"):
        import_official_ijepa(tmp_path / "ours.ckpt")
    with pytest.raises(ConfigError, match="not a standard ViT size: pass num_heads"):
        import_official_ijepa(OFFICIAL)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth.tar"
    with open(evil, "wb") as f:
        pickle.dump({"encoder": _RunsCode(marker)}, f, protocol=2)
    for load in (lambda: import_official_ijepa(evil), lambda: load_encoder(evil)):
        with pytest.raises(ConfigError, match=r"refused by the safe loader: it references (builtins\.)?getattr.*do not load this file"):
            load()
    assert not marker.exists()


def test_export_loads_without_lightning_and_as_timm(tmp_path):
    ckpt = tmp_path / "imported.ckpt"
    assert jepa(["import", str(OFFICIAL), "--out", str(ckpt), "--num_heads", "2"]) == 0
    out = tmp_path / "export"
    assert jepa(["export", "--ckpt", str(ckpt), "--out", str(out), "--mean", "0.5", "0.5", "0.5",
                 "--std", "0.25", "0.25", "0.25"]) == 0
    encoder, _ = load_encoder(ckpt)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tokens = encoder(x)
    torch.save(x, tmp_path / "x.pt")
    torch.save(tokens, tmp_path / "tokens.pt")
    script = (
        "import sys, torch\n"
        "from jepa.checkpoint import load_encoder\n"
        f"enc, args = load_encoder({str(out)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        f"want = torch.load({str(tmp_path / 'tokens.pt')!r}, weights_only=True)\n"
        "assert (enc(x) - want).abs().max() < 1e-6, 'outputs differ'\n"
        "assert 'lightning' not in sys.modules and 'lightning.pytorch' not in sys.modules, 'Lightning was imported'\n"
        "print('ok', args['embed_dim'])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert run.returncode == 0 and run.stdout.strip() == "ok 32", run.stderr[-2000:]
    config = (out / "config.json").read_text()
    assert "CC-BY-NC" in config and '"pooling": "avg"' in config and "0.25" in config

    timm_vit = to_timm(encoder)
    with torch.no_grad():
        assert (timm_vit.forward_features(x) - tokens).abs().max() < 1e-6
        assert (timm_vit(x) - tokens.mean(1)).abs().max() < 1e-6


def test_imported_v_jepa_modules_match_the_official_code(tmp_path):
    reference = torch.load(FIXTURES / "official_vjepa_tiny_io.pt", weights_only=True)
    out = tmp_path / "vjepa.ckpt"
    assert jepa(["import", str(FIXTURES / "official_vjepa_tiny.pth.tar"), "--out", str(out), "--num_heads", "2"]) == 0
    ckpt = torch.load(out, weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert {k: hp[k] for k in reference["hparams"]} == reference["hparams"]
    assert hp["uniform_power"] is True and hp["num_mask_tokens"] == 2  # read off the stored sin-cos table
    assert ckpt["imported_from"]["format"] == "official V-JEPA" and "CC-BY-NC" in ckpt["imported_from"]["licence"]
    encoder, _ = load_encoder(out, "encoder")
    target, _ = load_encoder(out)
    predictor = Predictor(hp["img_size"] // hp["patch_size"], hp["embed_dim"], hp["predictor_embed_dim"],
                          hp["predictor_depth"], hp["num_heads"], grid_t=hp["num_frames"] // hp["tubelet_size"],
                          uniform_power=True, num_mask_tokens=2).eval()
    predictor.load_state_dict({k[len("predictor."):]: v for k, v in ckpt["state_dict"].items()
                               if k.startswith("predictor.")})
    x, ctx, tgt, want = reference["inputs"], reference["context"], reference["target"], reference["outputs"]
    with torch.no_grad():
        diffs = {
            "encoder_full": (encoder(x) - want["encoder_full"]).abs().max(),
            "target_encoder_full": (target(x) - want["target_encoder_full"]).abs().max(),
            "encoder_context": (encoder(x, ctx) - want["encoder_context"]).abs().max(),
            **{f"predictor_{i}": (predictor(want["encoder_context"], ctx, [tgt], mask_index=i)
                                  - want[f"predictor_{i}"]).abs().max() for i in range(2)},
        }
    assert all(d <= 1e-5 for d in diffs.values()), diffs
    assert (want["predictor_0"] - want["predictor_1"]).abs().max() > 1e-3  # the two mask tokens differ


def test_video_encoder_exports_and_reloads(tmp_path):
    ckpt = tmp_path / "vjepa.ckpt"
    assert jepa(["import", str(FIXTURES / "official_vjepa_tiny.pth.tar"), "--out", str(ckpt), "--num_heads", "2"]) == 0
    assert jepa(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "export")]) == 0
    encoder, _ = load_encoder(ckpt)
    again, args = load_encoder(tmp_path / "export")
    assert args["num_frames"] == 4 and args["uniform_power"] is True and again.is_video
    clip = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(again(clip), encoder(clip))
    with pytest.raises(ConfigError, match="no timm VisionTransformer equivalent"):
        to_timm(encoder)
