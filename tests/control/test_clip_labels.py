"""Collected episodes as labelled clips: the labels say what the episode did, and `jepa probe` reads them by name."""
from __future__ import annotations

import json
import math

import pytest
import torch

from jepa.errors import ConfigError
from jepa_control.clip_labels import heading, trajectory_clips


def _episodes(root, steps: int = 9):
    from data.shard_sources import trajectory_sample
    from data.shard_writer import write_shards
    from jepa_control.collect import collect
    from jepa_control.two_rooms import TwoRooms, TwoRoomsConfig

    env = TwoRooms(TwoRoomsConfig(img_size=16))
    for split, n, seed in (("train", 8, 0), ("val", 3, 1)):
        samples = (trajectory_sample(f"e{i}", **t) for i, t in collect(env, "noisy", n, steps, seed=seed))
        write_shards(samples, root / split, "test", progress=False)


def test_heading_sectors_are_centred_on_the_eight_compass_directions():
    angles = torch.arange(8) * math.pi / 4
    unit = torch.stack([angles.cos(), angles.sin()], 1)
    assert heading(unit).tolist() == list(range(8))
    nudged = torch.stack([(angles + 0.3).cos(), (angles + 0.3).sin()], 1)  # inside the same 45-degree sector
    assert heading(3 * nudged).tolist() == list(range(8))
    assert heading(torch.tensor([[1.0, -0.5]])).item() == 7  # -26.6 degrees: the sector centred on -45


def test_clip_labels_are_the_middle_action_and_the_last_step_of_the_recorded_episode(tmp_path):
    from jepa_control.collect import read_trajectories

    _episodes(tmp_path)
    data = trajectory_clips(str(tmp_path), num_frames=4, size=16)
    val = read_trajectories(tmp_path / "val")
    # test clips: every start 0, 2, 4, 6 of the 10-frame held-out episodes, in order (fewer than the limit)
    assert len(data.test_x) == 3 * 4 and data.test_x.shape[1:] == (4, 3, 16, 16)
    for i, (e, s) in enumerate((e, s) for e in range(3) for s in (0, 2, 4, 6)):
        assert torch.equal(data.test_x[i], val["frames"][e, s : s + 4].permute(0, 3, 1, 2))
        assert data.test_labels["action"][i] == heading(val["actions"][e, s + 1][None].float())[0]
        moved = (val["proprio"][e, s + 3] - val["proprio"][e, s + 2]).float()
        fast = int(moved.norm() > data.source["median_speed"])
        assert data.test_labels["velocity"][i] == heading(moved[None])[0] * 2 + fast
    assert set(data.train_labels) == {"action", "velocity"} and len(data.train_x) == 8 * 4
    assert len(trajectory_clips(str(tmp_path), train_limit=5, num_frames=4, size=16).train_x) == 5  # seeded subset
    assert data.source["env"] is None  # shards written without an env name
    index = tmp_path / "train" / "index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "env": "two_rooms"}))  # as jepa collect records it
    assert trajectory_clips(str(tmp_path), num_frames=4, size=16).source["env"] == "two_rooms"
    with pytest.raises(ConfigError, match="shorter than the encoder's 16-frame clips"):
        trajectory_clips(str(tmp_path), num_frames=16, size=16)
    with pytest.raises(ConfigError, match="the encoder takes 64x64"):
        trajectory_clips(str(tmp_path), num_frames=4, size=64)


def test_jepa_probe_reads_a_clip_dataset_by_its_dotted_path(tmp_path):
    from jepa.cli import main
    from jepa.export import export_encoder
    from jepa.vit import VisionTransformer

    _episodes(tmp_path)
    torch.manual_seed(0)
    export_encoder(VisionTransformer(16, 4, 3, 16, 1, 2), tmp_path / "encoder", {}, None, [0.5] * 3, [0.25] * 3)
    args = ["probe", "--ckpt", str(tmp_path / "encoder"), "--data_root", str(tmp_path), "--attentive.enabled", "false",
            "--random_init", "false", "--cache_dir", "null", "--out", str(tmp_path / "probe"), "--plots", "false"]
    assert main([*args, "--data", "jepa_control.clip_labels.trajectory_clips"]) == 0
    record = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert record["labels"] == ["action", "velocity"] and record["clips"]["dataset"] == "trajectory_clips"
    assert 0.0 <= record["rows"]["jepa"]["action"]["linear"]["test_acc"] <= 1.0
    assert main([*args, "--data", "jepa_control.clip_labels.no_such_function", "--overwrite", "true"]) == 2
    assert main([*args, "--data", "jepa_control.clip_labels.HEADINGS", "--overwrite", "true"]) == 2  # not a function
