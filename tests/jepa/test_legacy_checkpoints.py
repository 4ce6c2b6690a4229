"""Checkpoints written by earlier code (tests/fixtures/legacy, made by tests/fixtures/make_legacy_checkpoints.py)
still load: strictly, with the same encoder outputs, and training resumes from them."""
from __future__ import annotations

from pathlib import Path

import torch

from jepa.checkpoint import load_checkpoint, load_encoder
from tests.conftest import TinyData, tiny_model, tiny_trainer, tiny_vjepa

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"


def test_legacy_jepa_checkpoints_give_the_same_encoder_outputs():
    outputs = torch.load(LEGACY / "outputs.pt", weights_only=True)
    for name in ("ijepa", "vjepa"):
        encoder, hparams = load_encoder(LEGACY / f"{name}_tiny.ckpt")
        with torch.no_grad():
            assert torch.equal(encoder(outputs[f"{name}_input"]), outputs[f"{name}_target_encoder"]), name


def test_legacy_checkpoints_resume_training_with_every_key_matched(tmp_path):
    for name, model, data in (("ijepa", tiny_model(), TinyData()), ("vjepa", tiny_vjepa(), TinyData(n=16, clips=True))):
        ckpt = load_checkpoint(LEGACY / f"{name}_tiny.ckpt")
        assert set(ckpt["state_dict"]) == set(model.state_dict()), name  # nothing renamed, nothing new
        trainer = tiny_trainer(tmp_path / name, max_steps=3)
        trainer.fit(model, data, ckpt_path=str(LEGACY / f"{name}_tiny.ckpt"))
        assert trainer.global_step == 3  # resumed at step 2, one more step taken


def test_legacy_world_model_loads_in_the_renamed_package():
    from jepa_control.world_model import WorldModel

    model = WorldModel.from_checkpoint(str(LEGACY / "world_model_tiny.ckpt"),
                                       encoder_ckpt=str(LEGACY / "world_model_encoder"))
    assert isinstance(model, WorldModel)
    state = load_checkpoint(LEGACY / "world_model_tiny.ckpt")["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
