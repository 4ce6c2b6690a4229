"""JEPA training keeps SDPA off cuDNN's backend on CUDA (per-shape plans: jepa/attention.py)."""
import pytest
import torch

import jepa.module
from jepa.attention import avoid_cudnn_attention
from tests.conftest import tiny_model, tiny_vjepa


@pytest.fixture
def cudnn_sdp_restored():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    yield
    torch.backends.cuda.enable_cudnn_sdp(before)


def test_turns_cudnn_attention_off_on_cuda_only(cudnn_sdp_restored):
    torch.backends.cuda.enable_cudnn_sdp(True)
    assert avoid_cudnn_attention("cpu") is False
    assert torch.backends.cuda.cudnn_sdp_enabled()  # CPU runs are left as they are
    assert avoid_cudnn_attention(torch.device("cuda", 0)) is True  # sets a process flag: no GPU needed
    assert not torch.backends.cuda.cudnn_sdp_enabled()
    assert avoid_cudnn_attention("cuda") is False  # already off
    # the other backends stay available
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()


@pytest.mark.parametrize("build", [tiny_model, tiny_vjepa])
def test_both_jepa_modules_apply_it_when_fitting_starts(build, monkeypatch):
    seen = []
    monkeypatch.setattr(jepa.module, "avoid_cudnn_attention", seen.append)
    model = build()
    model.on_fit_start()
    assert seen == [model.device]
