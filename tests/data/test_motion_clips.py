"""Motion clips: each label matches what the frames show, and the generator is a pure function of (seed, split, i)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data.motion_clips import GRID, HEADINGS, SPEEDS, MotionClips

SIDE = 12  # garments: a 12 x 12 block with a notch, so the centroid follows the corner exactly


def _clips(n: int = 400, **kwargs) -> MotionClips:
    images = torch.zeros(5, 1, SIDE, SIDE, dtype=torch.uint8)
    images[:, :, 2:10, 1:11] = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1) * 40 + 60
    images[:, :, 2:4, 1:3] = 0
    return MotionClips(images, torch.arange(5), "eval", n, num_frames=8, size=48, seed=3, garment=SIDE, **kwargs)


def _corners(frames: np.ndarray, garment: np.ndarray) -> np.ndarray:
    """Top-left corner of the garment in each background-free frame, from its pixels."""
    offset = np.argwhere(garment > 0).mean(0)
    return np.stack([np.argwhere(f > 0).mean(0) - offset for f in frames])[:, ::-1]  # (x, y)


def test_clips_are_a_pure_function_of_seed_split_and_index():
    a, b = _clips(), _clips()
    fa, ia = a.clip(17)
    fb, ib = b.clip(17)
    assert np.array_equal(fa, fb) and ia["motion"] == ib["motion"] and ia["future"] == ib["future"]
    assert not np.array_equal(fa, a.clip(18)[0])
    other = MotionClips(torch.from_numpy(a.images[:, None]), torch.arange(5), "train", 30, num_frames=8, size=48,
                        seed=3, garment=SIDE)
    assert not np.array_equal(fa, other.clip(17)[0])
    clip, cls, motion, index = a[17]
    assert clip.shape == (8, 1, 48, 48) and clip.dtype == torch.uint8 and (cls, motion, index) == (ia["class"],
                                                                                                   ia["motion"], 17)


def test_motion_label_is_the_heading_and_speed_the_frames_show():
    clips, checked = _clips(), 0
    for i in range(len(clips)):
        frames, info = clips.clip(i, background=False)
        if info["bounce"]:
            continue
        track = _corners(frames, clips.images[info["garment"]])
        step = (track[-1] - track[0]) / (len(track) - 1)  # rounding moves each end by <= 0.5 px
        heading = round(math.atan2(-step[1], step[0]) / (2 * math.pi) * HEADINGS) % HEADINGS
        speed = int(np.argmin([abs(np.hypot(*step) - s) for s in SPEEDS]))
        assert info["motion"] == heading * len(SPEEDS) + speed, i
        checked += 1
    assert checked > 30


def test_bounce_label_is_the_first_frame_the_garment_turns_at_a_border():
    clips, seen = _clips(), set()
    room = clips.size - clips.garment
    for i in range(len(clips)):
        frames, info = clips.clip(i, background=False)
        track = _corners(frames, clips.images[info["garment"]])
        b = info["bounce"]
        seen.add(b)
        straight = track[: b or len(track)]
        if len(straight) > 2:  # before the bounce the garment moves in a straight line
            t = np.arange(len(straight))[:, None]
            fit = straight[0] + (straight[-1] - straight[0]) * t / (len(straight) - 1)
            assert np.abs(straight - fit).max() <= 1.0, i
        if b:  # and at the bounce it is within one step of a border
            near = [min(track[k].min(), room - track[k].max()) for k in (b - 1, b)]
            assert min(near) <= max(SPEEDS) + 0.5, i
    assert seen == set(range(clips.num_frames))  # every bounce class occurs


def test_future_label_is_the_cell_the_garment_reaches_after_the_clip():
    clips = _clips(200)
    room = clips.size - clips.garment
    width, agree = room / GRID, 0
    for i in range(len(clips)):
        frames, info = clips.clip(i, background=False, extra_frames=clips.future)
        assert len(frames) == clips.num_frames + clips.future
        x, y = _corners(frames[-1:], clips.images[info["garment"]])[0]
        col, row = (min(GRID - 1, int(v / width)) for v in (x, y))
        if row * GRID + col == info["future"]:
            agree += 1
        else:  # the rendered corner is rounded: only a corner within half a pixel of a cell border may differ
            assert min(abs(v / width - round(v / width)) * width for v in (x, y)) <= 0.5 + 1e-6, i
    assert agree > 0.8 * len(clips)


def test_the_background_is_cluttered_and_never_plain_black():
    frames, _ = _clips().clip(0)
    assert frames.min() > 0 and len(np.unique(frames)) > 30
    empty, _ = _clips(clutter=0).clip(0, background=False)
    assert (empty == 0).mean() > 0.8


def test_a_frame_too_small_for_the_garment_is_refused():
    from jepa.errors import ConfigError

    with pytest.raises(ConfigError, match="garment < size"):
        MotionClips(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), torch.zeros(1), size=28, garment=28)


def test_monitor_clips_are_labelled_training_garment_clips_apart_from_training(fmnist_root):
    from data.motion_clips import MotionClipsDataModule

    dm = MotionClipsDataModule(fmnist_root, num_frames=4, size=48, frames=True, monitor_label="bounce")
    (fit_x, fit_y), (query_x, query_y) = dm.monitor_data(6, 4, seed=0)
    assert fit_x.shape == (6, 4, 1, 48, 48) and fit_x.dtype == torch.uint8 and query_x.shape[0] == 4
    reference = MotionClips(*_train_garments(fmnist_root), "eval", 10, 4, 48, seed=2000)
    assert fit_y.tolist() + query_y.tolist() == [reference.clip(i)[1]["bounce"] for i in range(10)]
    assert not any(torch.equal(q, f) for q in query_x for f in fit_x)
    train_clip = MotionClips(*_train_garments(fmnist_root), "train", 1, 4, 48, seed=0).clip(0)[0]
    assert not torch.equal(fit_x[0, :, 0], torch.from_numpy(train_clip))
    with pytest.raises(Exception, match="monitor_label must be one of"):
        MotionClipsDataModule(fmnist_root, monitor_label="speed")


def _train_garments(root):
    from data.fashion_mnist import load_split

    return load_split(root, "train")


def test_probe_clips_keep_asked_for_extras_apart_from_the_probed_labels(fmnist_root):
    from data.motion_clips import LABELS
    from eval.clip_probe import motion_clips

    data = motion_clips(fmnist_root, train_limit=6, test_limit=4, num_frames=4, size=48, extra=("path",))
    assert set(data.train_labels) == set(data.test_labels) == set(LABELS)  # neither the path nor last_cell is probed
    assert set(data.extras["train"]) == set(data.extras["test"]) == {"path"}
    reference = MotionClips(*_train_garments(fmnist_root), "eval", 6, 4, 48, seed=1000)  # probe-training clips
    path = torch.as_tensor(reference.clip(2)[1]["path"]).double()
    assert torch.allclose(data.extras["train"]["path"][2].double(), path)
    plain = motion_clips(fmnist_root, train_limit=6, test_limit=4, num_frames=4, size=48)
    assert plain.extras == {"train": {}, "test": {}}
