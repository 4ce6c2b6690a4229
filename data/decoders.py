"""Turn one raw WebDataset sample (a dict of bytes keyed by file extension) into training tensors.

Every decoder raises BadSample with a short reason when a sample cannot be used (missing key, zero-byte member,
undecodable bytes, wrong shape); the stream skips it, counts it under that reason and logs shard and key.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from data.video import decode_clip

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")
VIDEO_KEYS = ("mp4", "webm", "avi", "mkv", "mov")
REASONS = ("missing_key", "empty", "decode", "shape", "shard")  # "shard": unreadable or truncated tar


class BadSample(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def member(sample: dict, keys: tuple[str, ...], required: bool = True) -> tuple[str, bytes] | None:
    """The first present member among `keys` as (key, bytes); BadSample if absent (when required) or zero-byte."""
    for key in keys:
        if key in sample:
            data = sample[key]
            if not data:
                raise BadSample("empty", f"member .{key} has zero bytes")
            return key, data
    if required:
        raise BadSample("missing_key", f"none of {', '.join('.' + k for k in keys)} present (has {_present(sample)})")
    return None


def _present(sample: dict) -> str:
    return ", ".join("." + k for k in sample if not k.startswith("__")) or "no members"


def label_of(sample: dict) -> int:
    """The integer class in the .cls member, -1 when the sample has none."""
    found = member(sample, ("cls",), required=False)
    if found is None:
        return -1
    try:
        return int(found[1].decode().strip())
    except (UnicodeDecodeError, ValueError) as err:
        raise BadSample("decode", f".cls is not an integer ({err})") from err


def read_image(source: bytes | str | os.PathLike, channels: int) -> Image.Image:
    """A fully decoded PIL image in mode L (channels 1) or RGB (3), whatever the file's mode (palette, CMYK, 16-bit,
    alpha). BadSample when it is empty, undecodable, truncated, or larger than PIL's decompression-bomb limit
    (Image.MAX_IMAGE_PIXELS). Pillow rather than torchvision.io, whose image decoders are deprecated."""
    name = "member" if isinstance(source, (bytes, bytearray)) else str(source)
    if (len(source) if isinstance(source, (bytes, bytearray)) else os.path.getsize(source)) == 0:
        raise BadSample("empty", f"{name} has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a huge image is skipped, not decoded
            with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
                image.load()  # decode now, so a truncated file fails here rather than inside a transform
                return image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise BadSample("decode", f"{name} is not a decodable image ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:120] if str(err) else ''})") from err


def decode_image_member(sample: dict, channels: int) -> Image.Image:
    """The sample's image in mode L (channels 1) or RGB (3); the transforms' ToImage makes it a tensor."""
    key, data = member(sample, IMAGE_KEYS)
    try:
        return read_image(data, channels)
    except BadSample as err:
        raise BadSample(err.reason, f".{key}: {str(err).split(': ', 1)[1]}") from err


def load_npy(sample: dict, key: str, required: bool = True) -> np.ndarray | None:
    found = member(sample, (key,), required)
    if found is None:
        return None
    try:
        return np.load(io.BytesIO(found[1]), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise BadSample("decode", f".{key} is not a readable .npy array ({err})") from err


class ImageDecoder:
    """(image [C, H, W] after `transform`, label) from a sample with an image member and an optional .cls."""

    def __init__(self, transform, channels: int = 3) -> None:
        self.transform, self.channels = transform, channels

    def __call__(self, sample: dict, seed: int):
        image = decode_image_member(sample, self.channels)
        return self.transform(image), label_of(sample)


class ClipDecoder:
    """(clip [T, C, H, W] after `transform`, label) from a sample with a video member (mp4 by default).

    T = num_frames frames taken every frame_step frames from a random start; the transform sees the clip as one
    torchvision Video, so a RandomResizedCrop crops every frame the same way.
    """

    def __init__(self, transform, num_frames: int = 16, frame_step: int = 4) -> None:
        self.transform, self.num_frames, self.frame_step = transform, num_frames, frame_step

    def __call__(self, sample: dict, seed: int):
        key, data = member(sample, VIDEO_KEYS)
        try:
            frames = decode_clip(data, self.num_frames, self.frame_step, np.random.default_rng(seed))
        except ValueError as err:  # too short for num_frames x frame_step
            raise BadSample("shape", f".{key}: {err}") from err
        except Exception as err:  # noqa: BLE001 - PyAV raises many error types for broken streams
            raise BadSample("decode", f".{key} is not a decodable video ({type(err).__name__}: {err})") from err
        clip = tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2))
        return self.transform(clip), label_of(sample)


class TrajectoryDecoder:
    """A window of num_frames consecutive steps of a trajectory: dict(frames [k, C, H, W], actions [k-1, A],
    proprio [k, P] when present).

    Members: frames.npy uint8 [T, H, W, C], actions.npy [T-1 or T, A] (action t leads from frame t to t+1),
    optional proprio.npy [T, P]. num_frames=0 takes the whole trajectory.
    """

    def __init__(self, transform, num_frames: int = 4) -> None:
        self.transform, self.num_frames = transform, num_frames

    def __call__(self, sample: dict, seed: int):
        frames, actions = load_npy(sample, "frames.npy"), load_npy(sample, "actions.npy")
        proprio = load_npy(sample, "proprio.npy", required=False)
        t = len(frames)
        if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] not in (1, 3):
            raise BadSample("shape", f"frames.npy must be uint8 [T, H, W, 1|3], got {frames.dtype} {frames.shape}")
        if actions.ndim != 2 or len(actions) not in (t - 1, t):
            raise BadSample("shape", f"actions.npy must be [T-1 or T, A] for T={t}, got {actions.shape}")
        if proprio is not None and (proprio.ndim != 2 or len(proprio) != t):
            raise BadSample("shape", f"proprio.npy must be [T, P] for T={t}, got {proprio.shape}")
        k = self.num_frames or t
        if t < k:
            raise BadSample("shape", f"trajectory has {t} frames, fewer than num_frames={k}")
        start = int(np.random.default_rng(seed).integers(0, t - k + 1))
        window = torch.from_numpy(frames[start : start + k]).permute(0, 3, 1, 2)
        out = {
            "frames": self.transform(tv_tensors.Video(window)),
            "actions": torch.from_numpy(actions[start : start + k - 1].astype(np.float32)),
        }
        if proprio is not None:
            out["proprio"] = torch.from_numpy(proprio[start : start + k].astype(np.float32))
        return out
