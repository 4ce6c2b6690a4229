"""The time-to-accuracy benchmark: snapshots carry the target encoder and the seconds since launch, and an arm's time
to a threshold is its first snapshot at or above it."""
from __future__ import annotations

import time

import pytest
import torch

from tests.conftest import tiny_images, tiny_model


def test_seconds_to_threshold_is_the_first_snapshot_at_or_above_it():
    from benchmarks.time_to_accuracy import seconds_to, summarise

    points = [{"seconds": 300.0, "avg": 0.86}, {"seconds": 100.0, "avg": 0.79}, {"seconds": 200.0, "avg": 0.85}]
    assert seconds_to(points, 0.85) == 200.0 and seconds_to(points, 0.79) == 100.0
    assert seconds_to(points, 0.9) is None  # never reached: no time, not the last snapshot's
    result = summarise({"ours": points, "official": [{"seconds": 900.0, "avg": 0.80}, {"seconds": 1800.0, "avg": 0.85}]})
    assert result["ours_s_to_85"] == 200.0 and result["official_s_to_85"] == 1800.0 and result["ratio"] == 9.0
    assert result["arms"]["official"]["s_to_80"] == 900.0
    assert [p["seconds"] for p in result["arms"]["ours"]["points"]] == [100.0, 200.0, 300.0]
    short = summarise({"ours": points, "official": points[1:2]})  # the official arm short of 85 %: no ratio,
    assert short["ratio"] is None and short["official_trained_s"] == 100.0  # but a bound from all it trained
    assert short["ratio_at_least"] == 0.5
    assert "ratio_at_least" not in summarise({"ours": points[1:2], "official": points})  # ours short: no bound
    from benchmarks.recipe_summary import time_to_85

    assert time_to_85(short).endswith("did not reach 85 % in the 100.0 s it trained, so the ratio is at least 0.5")
    assert time_to_85({"ratio": None}) == "not measured"


def test_snapshots_hold_the_target_encoder_every_n_steps_and_at_the_end(tmp_path):
    from lightning.pytorch import Trainer

    from benchmarks.time_to_accuracy import Snapshots
    from jepa.checkpoint import load_strict
    from jepa.vit import VisionTransformer

    model = tiny_model()
    loader = torch.utils.data.DataLoader(tiny_images(24), batch_size=4)
    start = time.time()
    trainer = Trainer(accelerator="cpu", max_steps=5, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, callbacks=[Snapshots(str(tmp_path), 2, start)])
    trainer.fit(model, loader)
    saved = sorted(p.name for p in tmp_path.glob("step*.pt"))
    assert saved == ["step000000000.pt", "step000000002.pt", "step000000004.pt", "step000000005.pt"]
    last = torch.load(tmp_path / saved[-1], weights_only=True)
    assert last["step"] == 5 and 0 < last["seconds"] <= time.time() - start + 1
    encoder = VisionTransformer(**last["encoder_args"])
    load_strict(encoder, last["target_encoder"], "snapshot")  # the probe rebuilds it from the snapshot alone
    for name, value in model.target_encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value)
    first = torch.load(tmp_path / saved[0], weights_only=True)
    assert first["step"] == 0  # the random init the arm started from: its own baseline
    assert not torch.equal(first["target_encoder"]["blocks.0.attn.qkv.weight"],
                           last["target_encoder"]["blocks.0.attn.qkv.weight"])  # taken as training went on


def test_a_final_step_on_the_interval_is_saved_once(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    from benchmarks import time_to_accuracy

    saved = []
    monkeypatch.setattr(time_to_accuracy, "save_snapshot", lambda folder, step, *rest: saved.append(step))
    trainer = Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, callbacks=[time_to_accuracy.Snapshots(str(tmp_path), 2, time.time())])
    trainer.fit(tiny_model(), torch.utils.data.DataLoader(tiny_images(24), batch_size=4))
    assert saved == [0, 2, 4]


def test_the_official_arm_asks_for_a_checkout(monkeypatch, tmp_path):
    import sys

    from benchmarks import time_to_accuracy

    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--arms", "official", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--reference"):
        time_to_accuracy.main()


def test_a_resumed_arm_trains_on_the_batches_and_crops_an_unbroken_one_would():
    from benchmarks.time_to_accuracy import arm_loader
    from data.fashion_mnist import TensorImageDataset
    from data.resumable import KeyedDataset

    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    dataset = KeyedDataset(TensorImageDataset(images, torch.zeros(10)), lambda x: x + torch.rand(()), seed=0)

    def batches(step: int) -> list[torch.Tensor]:
        return [b[0].flatten() for b in arm_loader(dataset, 3, 0, step, None, num_workers=0)]

    whole = batches(6)  # epoch 2 (3 batches of 3 a epoch, the partial last one dropped)
    assert len(whole) == 3 and len({int(v) for b in whole for v in b}) == 9  # no image twice
    resumed = batches(7)
    assert len(resumed) == 2 and all(torch.equal(r, w) for r, w in zip(resumed, whole[1:]))  # same images, crops
    assert not torch.equal(torch.cat(batches(3)), torch.cat(whole))  # another epoch, another order


def test_only_the_official_arm_with_a_saved_state_resumes(monkeypatch, tmp_path):
    import sys

    from benchmarks import time_to_accuracy

    folder = tmp_path / "snapshots" / "official"
    folder.mkdir(parents=True)
    (folder / "step000000000.pt").write_bytes(b"")
    calls = []
    monkeypatch.setattr(time_to_accuracy, "train_official", lambda *args, **_: calls.append(args) or False)
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--arms", "official", "--reference", "x",
                                      "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unfinished arm"):  # snapshots without a state: times not comparable
        time_to_accuracy.main()
    (folder / "state.pt").write_bytes(b"")
    time_to_accuracy.main()  # resumed; stopped again before the end
    assert len(calls) == 1 and not (folder / "done").exists()


def test_the_official_arm_takes_the_recipes_encoder_and_predictor_sizes(tmp_path):
    from benchmarks.time_to_accuracy import recipe_architecture

    full, full_predictor = recipe_architecture("configs/ijepa/fmnist_full.yaml")  # through two bases
    assert full == {"img_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": 128, "depth": 4, "num_heads": 4}
    assert full_predictor == {"predictor_embed_dim": 64, "predictor_depth": 3}
    fast, _ = recipe_architecture("configs/ijepa/fmnist_fast.yaml")  # its own sizes override its bases'
    assert (fast["patch_size"], fast["embed_dim"], fast["depth"]) == (7, 192, 4)
    bare = tmp_path / "bare.yaml"
    bare.write_text("model: {init_args: {img_size: 28}}\n")
    with pytest.raises(SystemExit, match="names no patch_size"):
        recipe_architecture(str(bare))


def test_the_official_arm_refuses_a_grid_whose_target_blocks_its_collator_cannot_draw(monkeypatch, tmp_path):
    import sys

    from benchmarks import time_to_accuracy

    assert time_to_accuracy.smallest_target_block({"img_size": 28, "patch_size": 4}) == 6  # 7 x 7: 6-9 tokens
    assert time_to_accuracy.smallest_target_block({"img_size": 28, "patch_size": 7}) == 1  # 4 x 4: 1-4 tokens
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--arms", "official", "--reference", "x", "--config",
                                      "configs/ijepa/fmnist_fast.yaml", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="4 x 4 token grid"):
        time_to_accuracy.main()


def test_summary_as_writes_another_recipes_curve_beside_the_headline_comparison(monkeypatch, tmp_path):
    import json
    import sys

    from benchmarks import time_to_accuracy

    results = tmp_path / "results"
    results.mkdir()
    headline = {"ours_s_to_85": 2848.7, "official_s_to_85": 4609.4, "ratio": 1.62}
    blank = {"avg": None, "flat": None, "knn": None, "random_init_avg": None, "random_init_knn": None,
             "train_seconds": None, "seeds": []}
    (results / "summary.json").write_text(json.dumps({"quickstart": blank, "full": blank,
                                                      "time_to_accuracy": headline}))
    monkeypatch.setattr(time_to_accuracy, "RESULTS", results)
    out = tmp_path / "tta"
    (out / "snapshots" / "ours").mkdir(parents=True)
    (out / "snapshots" / "ours" / "done").write_text("")  # trained and probed already: nothing runs
    points = [{"file": "a", "step": 0, "seconds": 6.0, "avg": 0.81}, {"file": "b", "step": 9, "seconds": 700.0,
                                                                      "avg": 0.852}]
    (out / "probes.json").write_text(json.dumps({"ours": points}))
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--arms", "ours", "--config",
                                      "configs/ijepa/fmnist_fast.yaml", "--out", str(out), "--summary",
                                      "--summary_as", "fast_encoder"])
    time_to_accuracy.main()
    t = json.loads((results / "summary.json").read_text())["time_to_accuracy"]
    assert {k: t[k] for k in headline} == headline  # the headline comparison is left as it was
    assert t["fast_encoder"]["ours_s_to_85"] == 700.0 and t["fast_encoder"]["ours_s_to_80"] == 6.0
    assert t["fast_encoder"]["config"] == "configs/ijepa/fmnist_fast.yaml" and len(t["fast_encoder"]["points"]) == 2
    assert "fast_encoder (`configs/ijepa/fmnist_fast.yaml`): 700.0 s to 85 %" in (results / "summary.md").read_text()
    # a later headline measurement replaces the headline and keeps the other curve
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--arms", "ours", "--out", str(out), "--summary"])
    time_to_accuracy.main()
    t = json.loads((results / "summary.json").read_text())["time_to_accuracy"]
    assert t["ours_s_to_85"] == 700.0 and t["ratio"] is None and t["fast_encoder"]["ours_s_to_85"] == 700.0
