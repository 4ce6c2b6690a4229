"""Video decoding and encoding with PyAV (no system ffmpeg needed)."""
from __future__ import annotations

import io

import av
import numpy as np


def decode_clip(data: bytes, num_frames: int, frame_step: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [num_frames, H, W, 3]: frames start, start + frame_step, ... from a random start.

    Decodes only up to the last frame needed. ValueError if the video is too short.
    """
    span = (num_frames - 1) * frame_step + 1
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        known = stream.frames  # 0 when the container does not say
        start = int(rng.integers(0, known - span + 1)) if known >= span else 0
        wanted = set(range(start, start + span, frame_step))
        frames = []
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == num_frames:
                    break
    if len(frames) < num_frames:
        raise ValueError(f"video has too few frames for {num_frames} frames every {frame_step} (span {span})")
    return np.stack(frames)


def encode_mp4(frames: np.ndarray, fps: int = 10) -> bytes:
    """H.264 mp4 bytes of uint8 frames [T, H, W, 3] (even H and W)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
