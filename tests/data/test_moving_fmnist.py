"""Moving Fashion-MNIST: deterministic clips whose labels are right, checked on the frames themselves."""
import numpy as np
import pytest
import torch

from data.moving_fmnist import GARMENT, STEPS, ClipFrames, MovingFashionMNIST
from jepa.errors import ConfigError


@pytest.fixture(scope="module")
def garments():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (20, 1, GARMENT, GARMENT), generator=g, dtype=torch.uint8)  # no zero pixels
    return images, torch.arange(20) % 10


def test_clips_are_a_pure_function_of_seed_split_and_index(garments):
    a = MovingFashionMNIST(*garments, "train", 10, num_frames=8, seed=1)
    b = MovingFashionMNIST(*garments, "train", 10, num_frames=8, seed=1)
    c = MovingFashionMNIST(*garments, "train", 10, num_frames=8, seed=2)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(10))
    assert not all(torch.equal(a[i][0], c[i][0]) for i in range(10))
    assert torch.equal(a[7][0], a[7][0]) and a[7][0].shape == (8, 1, 64, 64)


@pytest.mark.parametrize("side, num_frames", [(GARMENT, 16), (40, 8)])
def test_eval_clips_move_one_garment_in_the_labelled_direction_inside_the_frame(garments, side, num_frames):
    images, labels = garments
    data = MovingFashionMNIST(images, labels, "eval", 64, num_frames=num_frames, seed=0, garment=side)
    assert data.images.shape == (20, side, side)
    if side != GARMENT:  # upsampled, still the same garment: shrunk back it is close to the original
        back = torch.nn.functional.interpolate(torch.from_numpy(data.images[:, None]).float(), size=GARMENT,
                                               mode="area")
        corr = lambda a, b: torch.corrcoef(torch.stack([a.flatten(), b.float().flatten()]))[0, 1]  # noqa: E731
        assert corr(back, images) > 0.7 and abs(corr(back, images.roll(1, 0))) < 0.1  # noise: other garments unlike
    seen = set()
    for i in range(64):
        frames, info = data.clip(i)
        (g,), (x0, y0), k = info["garments"], info["start"], info["direction"]
        assert info["label"] == int(labels[g])
        dx, dy = STEPS[k]
        for t in range(num_frames):
            x, y = x0 + 2 * dx * t, y0 + 2 * dy * t
            assert 0 <= x and x + side <= 64 and 0 <= y and y + side <= 64
            assert np.array_equal(frames[t, y : y + side, x : x + side], data.images[g])
            assert int(frames[t].astype(bool).sum()) == side * side  # nothing else in the frame
        # the direction read off the frames: displacement of the bright pixels' centre
        ys, xs = np.nonzero(frames[0])
        ye, xe = np.nonzero(frames[-1])
        assert (np.sign(xe.mean() - xs.mean()), np.sign(ye.mean() - ys.mean())) == (dx, dy)
        seen.add(k)
    assert seen == set(range(8))


def test_training_clips_bounce_inside_the_frame(garments):
    data = MovingFashionMNIST(*garments, "train", 30, num_frames=32, seed=0)
    counts = set()
    for i in range(30):
        frames, info = data.clip(i)
        counts.add(len(info["garments"]))
        assert frames.shape == (32, 64, 64) and (frames.reshape(32, -1).max(1) > 0).all()  # never leaves the frame
    assert counts == {1, 2, 3}


def test_a_frame_too_small_for_the_eval_motion_is_refused(garments):
    with pytest.raises(ConfigError, match="without leaving it"):
        MovingFashionMNIST(*garments, "eval", 4, num_frames=32, size=64)
    with pytest.raises(ConfigError, match="lower garment"):
        MovingFashionMNIST(*garments, "eval", 4, num_frames=8, size=64, garment=56)


def test_frames_of_the_clips_are_the_clips_cut_frame_by_frame(garments):
    clips = MovingFashionMNIST(*garments, "train", 5, num_frames=8, seed=3)
    frames = ClipFrames(clips)
    assert len(frames) == 40
    for i in (0, 7, 8, 21, 39):
        frame, label, direction, index = frames[i]
        clip, clip_label, clip_direction, _ = clips[i // 8]
        assert frame.shape == (1, 64, 64) and torch.equal(frame, clip[i % 8])
        assert (label, direction, index) == (clip_label, clip_direction, i)
