"""Probes and monitors: kNN against brute force, attentive probe on a positional task, test labels never used for
model selection, the feature cache, and clear errors for encoders that do not fit."""
import math
import warnings

import pytest
import torch

from eval.attentive_probe import attentive_probe
from eval.feature_cache import FeatureCache
from eval.knn import knn_predict
from eval.linear_probe import linear_probe
from eval.monitors import EncoderCollapseWarning, OnlineProbe
from eval.probe import KnnConfig, ProbeData, Row, check_compatible, probe_rows
from jepa.checkpoint import load_encoder
from jepa.errors import ConfigError
from jepa.pos_embed import sincos_2d
from jepa.vit import VisionTransformer


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    train_x, train_y = torch.randn(200, 8, generator=g), torch.randint(0, 4, (200,), generator=g)
    query = torch.randn(30, 8, generator=g)
    scores = knn_predict(train_x, train_y, query, k=7, temperature=0.1, num_classes=4, chunk=7)
    for q in range(len(query)):  # one query at a time, the slow obvious way
        sims = [(float(torch.dot(query[q], t) / (query[q].norm() * t.norm())), int(c)) for t, c in zip(train_x, train_y)]
        sims.sort(reverse=True)
        votes = [0.0] * 4
        for s, c in sims[:7]:
            votes[c] += math.exp(s / 0.1)
        assert torch.allclose(scores[q], torch.tensor(votes), rtol=1e-4)
        assert int(scores[q].argmax()) == max(range(4), key=votes.__getitem__)


def _positional_task(n: int, seed: int):
    """Tokens = a position code + noise; the class is *where* a marker vector sits, which an average cannot see."""
    g = torch.Generator().manual_seed(seed)
    pos = sincos_2d(16, 3, 3)  # 9 tokens, dim 16
    y = torch.randint(0, 9, (n,), generator=g)
    x = pos.expand(n, -1, -1) + 0.1 * torch.randn(n, 9, 16, generator=g)
    marker = torch.randn(16, generator=torch.Generator().manual_seed(99))
    x[torch.arange(n), y] += 2 * marker
    return x, y


def test_attentive_probe_learns_a_positional_task_that_average_pooling_cannot():
    tr_x, tr_y = _positional_task(1500, 0)
    te_x, te_y = _positional_task(300, 1)
    result = attentive_probe(tr_x, tr_y, te_x, te_y, lrs=(3e-3,), epochs=15, batch_size=64, num_heads=2)
    assert result.test_acc > 0.9
    avg = linear_probe(tr_x.mean(1), tr_y, te_x.mean(1), te_y, epochs=10)
    assert avg.test_acc < 0.3  # chance is 1/9: the average hides the marker's position


def test_model_selection_never_sees_test_labels():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(3, 12, generator=g) * 2
    y = torch.randint(0, 3, (600,), generator=g)
    x = centres[y] + torch.randn(600, 12, generator=g)
    tr_x, tr_y, te_x, te_y = x[:450], y[:450], x[450:], y[450:]
    garbage = torch.randint(0, 3, te_y.shape, generator=g)
    a = linear_probe(tr_x, tr_y, te_x, te_y, lrs=(1e-3, 1e-2), weight_decays=(1e-4, 1e-1), epochs=3, sweep_epochs=3)
    b = linear_probe(tr_x, tr_y, te_x, garbage, lrs=(1e-3, 1e-2), weight_decays=(1e-4, 1e-1), epochs=3, sweep_epochs=3)
    assert (a.lr, a.weight_decay, a.val_acc) == (b.lr, b.weight_decay, b.val_acc)
    assert torch.equal(a.test_pred, b.test_pred) and a.test_acc != b.test_acc
    tok = x.unsqueeze(1).repeat(1, 2, 1)
    c = attentive_probe(tok[:450], tr_y, tok[450:], te_y, lrs=(1e-3, 1e-2), epochs=1, num_heads=2)
    d = attentive_probe(tok[:450], tr_y, tok[450:], garbage, lrs=(1e-3, 1e-2), epochs=1, num_heads=2)
    assert (c.lr, c.val_acc) == (d.lr, d.val_acc) and torch.equal(c.test_pred, d.test_pred)


class CountingEncoder(VisionTransformer):
    calls = 0

    def forward(self, *args, **kwargs):
        CountingEncoder.calls += 1
        return super().forward(*args, **kwargs)


def _tiny_data(n_train=120, n_test=40, size=8) -> ProbeData:
    g = torch.Generator().manual_seed(0)
    tr = torch.randint(0, 256, (n_train, 1, size, size), generator=g, dtype=torch.uint8)
    te = torch.randint(0, 256, (n_test, 1, size, size), generator=g, dtype=torch.uint8)
    return ProbeData("tiny", tr, torch.randint(0, 3, (n_train,), generator=g), te,
                     torch.randint(0, 3, (n_test,), generator=g), (0.5,), (0.25,), ["a", "b", "c"], {"dataset": "tiny"})


def test_feature_cache_hits_on_the_second_run_and_misses_when_pooling_changes(tmp_path):
    torch.manual_seed(0)
    enc = CountingEncoder(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2).eval()
    row = Row("enc", enc, {"checkpoint_sha256": "abc", "which": "target_encoder"}, 4)
    data = _tiny_data()
    kw = dict(linear=None, knn=KnnConfig(protocols=("avg",)), layers=1, batch_size=64, log=lambda *_: None)

    first_cache = FeatureCache(tmp_path)
    first = probe_rows([row], data, ("avg",), cache=first_cache, **kw)
    assert (first_cache.hits, first_cache.misses) == (0, 2)  # train and test features, each computed once
    calls = CountingEncoder.calls
    assert calls > 0

    again = FeatureCache(tmp_path)
    second = probe_rows([row], data, ("avg",), cache=again, **kw)
    assert (again.hits, again.misses) == (2, 0) and CountingEncoder.calls == calls  # the encoder never ran
    assert second["enc"]["linear"]["avg"] == first["enc"]["linear"]["avg"]

    pooled = FeatureCache(tmp_path)
    probe_rows([row], data, ("avg+2x2",), cache=pooled, **kw)
    assert pooled.misses == 2 and CountingEncoder.calls > calls

    other_ckpt = FeatureCache(tmp_path)
    probe_rows([Row("enc", enc, {"checkpoint_sha256": "def", "which": "target_encoder"}, 4)], data, ("avg",),
               cache=other_ckpt, **kw)
    assert other_ckpt.misses == 2


def test_feature_cache_keeps_its_dtype_with_and_without_a_file(tmp_path):
    x = 1.0 + torch.arange(4, dtype=torch.float32) * 1e-4  # differences below fp16's resolution at 1.0 (~1e-3)
    for root in (tmp_path, None):  # the same spec: the dtype keys the entry, fp32 never reads an fp16 one
        assert torch.equal(FeatureCache(root, torch.float32).get_or_compute({"k": 1}, lambda: x), x)
        assert torch.equal(FeatureCache(root).get_or_compute({"k": 1}, lambda: x), x.half().float())
    assert torch.equal(FeatureCache(tmp_path, torch.float32).get_or_compute({"k": 1}, lambda: None), x)  # a hit
    assert torch.unique(FeatureCache(tmp_path).get_or_compute({"k": 1}, lambda: None)).numel() == 1  # fp16 merged them


def test_encoder_that_does_not_fit_the_data_is_refused_by_name():
    enc = VisionTransformer(img_size=12, patch_size=4, in_chans=3, embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(ConfigError, match=r"3-channel 12x12 images .*in_chans=3, img_size=12.* tiny has 1-channel 8x8"):
        check_compatible(enc, _tiny_data(), "my.ckpt")


def test_foreign_partial_and_code_running_checkpoints_are_refused(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"encoder": {}, "epoch": 3}, foreign)  # the shape of an official I-JEPA checkpoint
    with pytest.raises(ConfigError, match="not a Lightning checkpoint of this project: no state_dict"):
        load_encoder(foreign)

    enc = VisionTransformer(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    hp = dict(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2)
    state = {f"target_encoder.{k}": v for k, v in enc.state_dict().items() if k != "norm.bias"}
    partial = tmp_path / "partial.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hp}, partial)
    with pytest.raises(ConfigError, match=r"missing keys \['norm.bias'\]"):
        load_encoder(partial)
    no_hp = tmp_path / "nohp.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"img_size": 8}}, no_hp)
    with pytest.raises(ConfigError, match=r"hyper_parameters lack \['patch_size'"):
        load_encoder(no_hp)

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": warnings.catch_warnings}, evil)  # unpickling would import and call code
    with pytest.raises(ConfigError, match=r"refused by the safe loader: it references warnings.catch_warnings.*do not load this file"):
        load_encoder(evil)


class _Encoder(torch.nn.Module):
    """Tokens from a fixed random projection; `collapse()` makes every image map to the same tokens."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 12)

    def collapse(self):
        with torch.no_grad():
            self.proj.weight.zero_()

    def forward(self, x):
        return self.proj(x.flatten(1)).view(len(x), 1, 12)


def test_online_probe_measures_and_warns_on_collapse():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 2
    y = torch.randint(0, 3, (300,), generator=g)
    x = (centres[y] + 0.3 * torch.randn(300, 16, generator=g)).view(300, 1, 4, 4)

    class Data:
        def monitor_data(self, n_fit, n_query, seed):
            return (x[:n_fit], y[:n_fit]), (x[200 : 200 + n_query], y[200 : 200 + n_query])

    class Module:
        target_encoder = _Encoder()
        device = torch.device("cpu")

    class Trainer:
        datamodule, global_step = Data(), 0

    probe = OnlineProbe(every_n_steps=1, fit_samples=200, query_samples=100, linear_epochs=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EncoderCollapseWarning)
        row = probe.measure(Trainer(), Module())
    assert row["knn_acc"] > 0.9 and row["linear_acc"] > 0.9 and row["rankme"] > 1.5
    probe.history.append(row)
    Module.target_encoder.collapse()
    Trainer.global_step = 1
    with pytest.warns(EncoderCollapseWarning, match="step 1: RankMe .* collapsing"):
        collapsed = probe.measure(Trainer(), Module())
    assert collapsed["rankme"] < 1.5 and collapsed["knn_acc"] < 0.6


def test_supervised_reference_learns_and_its_encoder_loads_for_probes(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from eval.supervised import SupervisedViT
    from tests.conftest import tiny_trainer

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.rand(64, 1, 8, 8, generator=g) * 0.2
    x[y == 1, :, :4] += 0.8  # class 1: a bright top half
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g)
    torch.manual_seed(0)
    model = SupervisedViT(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1, num_heads=2, num_classes=2,
                          lr=3e-3, warmup_fraction=0.0, label_smoothing=0.0)
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(model(x), y).item()
    trainer = tiny_trainer(tmp_path, max_epochs=15)
    trainer.fit(model, loader)
    with torch.no_grad():
        after = model(x)
    assert torch.nn.functional.cross_entropy(after, y).item() < 0.5 * before
    assert (after.argmax(1) == y).float().mean() > 0.9
    ckpt = tmp_path / "sup.ckpt"
    trainer.save_checkpoint(ckpt)
    encoder, hparams = load_encoder(ckpt, "auto")
    assert hparams["num_classes"] == 2
    assert torch.equal(encoder.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)
    assert isinstance(trainer, L.Trainer)


def test_probe_command_names_a_foreign_checkpoint_in_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    foreign = tmp_path / "official.pth.tar"
    torch.save({"encoder": {"module.pos_embed": torch.zeros(1)}, "epoch": 1}, foreign)
    out = subprocess.run([sys.executable, "-m", "jepa.cli", "probe", "--ckpt", str(foreign)], capture_output=True,
                         text=True, timeout=120, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(f"jepa: error: {foreign} is not a Lightning checkpoint")


def test_monitor_data_is_disjoint_training_images_and_skips_unreadable_files(tmp_path):
    import numpy as np
    from PIL import Image

    from data.image_folder import ImageFolderDataModule

    for label in range(2):
        folder = tmp_path / f"class{label}"
        folder.mkdir()
        for i in range(6):
            Image.fromarray(np.full((12, 12, 3), 40 * i + label, np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "class0" / "broken.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(str(tmp_path), img_size=8, batch_size=2, num_workers=0)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        (fit_x, fit_y), (query_x, query_y) = dm.monitor_data(8, 4, seed=0)
    assert fit_x.shape == (8, 3, 8, 8) and query_x.shape == (4, 3, 8, 8)
    pixels = {float(x[0, 0, 0]) for x in torch.cat([fit_x, query_x])}
    assert len(pixels) == 12  # 12 different images: the two parts never share one
    assert set(fit_y.tolist()) | set(query_y.tolist()) == {0, 1}


def test_fashion_mnist_monitor_data_comes_from_the_training_split(fmnist_root):
    from data.fashion_mnist import FashionMNISTDataModule, load_split

    (fit_x, fit_y), (query_x, query_y) = FashionMNISTDataModule(fmnist_root).monitor_data(50, 30, seed=3)
    assert fit_x.shape == (50, 1, 28, 28) and query_x.shape == (30, 1, 28, 28)
    train = load_split(fmnist_root, "train")[0].float().flatten(1)
    raw = (torch.cat([fit_x, query_x]).flatten(1) * 0.3530 + 0.2860) * 255
    nearest = torch.cdist(raw, train, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert nearest.max() < 0.1  # every monitor image is a training image
    assert len({tuple(r.round().tolist()) for r in raw}) == 80


def test_last_k_layer_tokens_are_each_blocks_normed_output_in_order_batch_by_batch():
    from eval.features import encode_tokens

    torch.manual_seed(0)
    enc = VisionTransformer(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=3, num_heads=2).eval()
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    x = images.float().div(255).sub(0.5).div(0.25)
    with torch.no_grad():  # the blocks by hand: layer i's tokens = the final norm of block i's output
        h, outs = enc.patch_embed(x) + enc.pos_embed, []
        for block in enc.blocks:
            h = block(h)
            outs.append(enc.norm(h))
    last2 = encode_tokens(enc, images, (0.5,), (0.25,), batch_size=2, layers=2)  # batches of 2, 2, 1
    assert last2.shape == (5, 4, 32) and last2.dtype == torch.float32
    torch.testing.assert_close(last2, torch.cat(outs[1:], dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encode_tokens(enc, images, (0.5,), (0.25,), batch_size=3), outs[-1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="depth 3"):
        encode_tokens(enc, images, (0.5,), (0.25,), layers=4)


def test_standardised_tokens_let_the_attentive_probe_see_a_small_signal_on_a_large_offset():
    """Tokens of a near-collapsed encoder: a large shared offset, the class in a change of ~1 % of it."""
    (tr_x, tr_y), (te_x, te_y) = _positional_task(1500, 0), _positional_task(300, 1)
    offset = 30 * torch.randn(16, generator=torch.Generator().manual_seed(5))
    tr_x, te_x = offset + 0.01 * tr_x, offset + 0.01 * te_x
    settings = dict(lrs=(3e-3,), epochs=15, batch_size=64, num_heads=2)
    raw = attentive_probe(tr_x, tr_y, te_x, te_y, **settings)
    standardised = attentive_probe(tr_x, tr_y, te_x, te_y, standardise=True, **settings)
    assert standardised.test_acc > 0.9 and raw.test_acc < 0.5


def test_online_probe_follows_a_clip_label_that_only_frame_order_answers():
    """Clips of a bright bar sweeping left-to-right or right-to-left: every clip holds the same frames, so only the
    time-pooled (time-ordered) features the monitor uses for clips tell the two directions apart."""

    class HalfMeans(torch.nn.Module):  # an image encoder whose two tokens are the left and right half's brightness
        is_video, tubelet_size = False, 1

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def encode(self, x):  # [B, T, 1, H, W] -> [B, T, 2, 2]
            w = x.shape[-1] // 2
            left, right = x[..., :w].mean((-3, -2, -1)), x[..., w:].mean((-3, -2, -1))
            zero = torch.zeros_like(left)
            return self.scale * torch.stack([torch.stack([left, zero], -1), torch.stack([zero, right], -1)], 2)

    frames = torch.zeros(4, 1, 4, 4, dtype=torch.uint8)
    for t in range(4):
        frames[t, 0, :, t] = 255
    y = torch.arange(200) % 2
    x = torch.stack([frames if label == 0 else frames.flip(0) for label in y])

    class Data:
        normalisation = {"mean": [0.5], "std": [0.5]}

        def monitor_data(self, n_fit, n_query, seed):
            return (x[:n_fit], y[:n_fit]), (x[n_fit : n_fit + n_query], y[n_fit : n_fit + n_query])

    class Module:
        target_encoder, device = HalfMeans(), torch.device("cpu")

    class Trainer:
        datamodule, global_step = Data(), 0

    with warnings.catch_warnings():  # two distinct feature vectors: RankMe 1, which the monitor rightly flags
        warnings.simplefilter("ignore", EncoderCollapseWarning)
        row = OnlineProbe(every_n_steps=1, fit_samples=120, query_samples=80, linear_epochs=50).measure(Trainer(),
                                                                                                         Module())
    assert row["linear_acc"] == 1.0 and row["knn_acc"] == 1.0
    pooled_over_time = HalfMeans().encode(x.float()).mean((1, 2))
    assert torch.equal(pooled_over_time[y == 0][0], pooled_over_time[y == 1][0])  # blind without the time order


def test_online_probe_measures_at_the_last_epoch_only_when_the_run_is_bounded_by_epochs():
    probe = OnlineProbe(every_n_steps=1000)
    measured = []
    probe._run = lambda trainer, module: measured.append(trainer.current_epoch)

    class Trainer:
        current_epoch, max_epochs = 0, -1  # a step-bounded run: no epoch end is the last

    probe.on_train_epoch_end(Trainer(), None)
    Trainer.max_epochs, Trainer.current_epoch = 3, 1
    probe.on_train_epoch_end(Trainer(), None)
    Trainer.current_epoch = 2
    probe.on_train_epoch_end(Trainer(), None)
    assert measured == [2]
