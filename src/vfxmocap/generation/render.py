"""Run a loaded pipeline on one request: progress per denoising step and for the VAE decode,
cancel between steps, latent previews, and RGB uint8 frames out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vfxmocap.core.errors import DeviceError
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.generation.families import Family, Request
from vfxmocap.media.image import Frame, thumbnail_jpeg

PREVIEW_EVERY = 2  # steps between latent previews (when the listener wants one)


@dataclass
class Rendered:
    frames: list[Frame]
    timings: dict[str, float] = field(default_factory=dict)


def render(
    pipe: Any,
    family: Family,
    request: Request,
    progress: Progress,
    cancel: CancelToken,
    class_name: str,
    extra: dict[str, Any] | None = None,
    span: tuple[int, int] = (0, 1),
) -> Rendered:
    """Denoise and decode `request`; `Cancelled` from a step aborts at once, without the
    decode, and frees the offload hooks. `span` (index, count): this is one segment of a
    chain, and the denoise stage counts the steps of all of them."""
    import torch

    marks = {"start": time.perf_counter()}
    callback = _step_callback(family, request, progress, cancel, marks, span)
    kwargs = {**family.call_kwargs(request, class_name), **(extra or {})}
    index, count = span
    if index == 0:
        progress.stage("denoise", request.steps * count)
    try:
        with torch.inference_mode():
            result = pipe(
                **kwargs,
                generator=torch.Generator("cpu").manual_seed(request.seed),
                callback_on_step_end=callback,
            )
    finally:
        pipe.maybe_free_model_hooks()  # a raise inside the loop skips diffusers' own call
    if index == count - 1:
        progress.advance(1)  # the decode stage
    marks["decoded"] = time.perf_counter()
    return Rendered(_to_frames(result.frames[0]), _timings(marks))


def _step_callback(
    family: Family,
    request: Request,
    progress: Progress,
    cancel: CancelToken,
    marks: dict[str, float],
    span: tuple[int, int],
) -> Any:
    """The `callback_on_step_end`: count the step, maybe preview, raise on cancel."""
    index, count = span
    segment = f"segment {index + 1}/{count}" if count > 1 else ""

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> Any:
        cancel.check()
        progress.advance(1, message=segment)
        last = step + 1 == request.steps
        if progress.wants_preview() and (step % PREVIEW_EVERY == 0 or last):
            latents = family.video_latents(tensors["latents"], pipe, request)
            size = (request.width, request.height)
            image = cv2.resize(latent_preview(latents), size, interpolation=cv2.INTER_LINEAR)
            progress.preview(thumbnail_jpeg(image))
        if last:
            marks["denoised"] = time.perf_counter()
            if index == count - 1:
                progress.stage("decode", 1, message="VAE decode")
            else:  # a middle segment's decode counts inside the chain's denoise stage
                progress.advance(0, message=f"{segment}: VAE decode")
        return tensors

    return on_step_end


def latent_preview(latents: Any) -> Frame:
    """The middle latent frame projected linearly onto its three principal channel
    directions: a cheap RGB look at the layout, computed from the latent itself."""
    import torch

    video = latents[0].float()  # (channels, frames, height, width)
    frame = video[:, video.shape[1] // 2].flatten(1).T  # (pixels, channels)
    centred = frame - frame.mean(0)
    _, _, basis = torch.linalg.svd(centred, full_matrices=False)
    rgb = centred @ basis[:3].T if basis.shape[0] >= 3 else centred[:, :1].repeat(1, 3)
    low, high = rgb.min(0).values, rgb.max(0).values
    scaled = (rgb - low) / (high - low).clamp(min=1e-6) * 255
    image = scaled.reshape(video.shape[2], video.shape[3], 3).round().to(torch.uint8)
    return np.ascontiguousarray(image.cpu().numpy())


def _to_frames(video: Any) -> list[Frame]:
    """The pipeline's float frames in [0, 1] as RGB uint8; NaNs mean the dtype overflowed."""
    array = np.asarray(video, dtype=np.float32)
    if np.isnan(array).any():
        raise DeviceError(
            "the generated frames contain NaN: the model overflowed in this dtype",
            hint="Run in bfloat16 or float32 (a GPU with bf16, or --device cpu).",
        )
    frames = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return [np.ascontiguousarray(f) for f in frames]


def _timings(marks: dict[str, float]) -> dict[str, float]:
    denoised = marks.get("denoised", marks["decoded"])
    return {
        "denoise_s": round(denoised - marks["start"], 4),
        "decode_s": round(marks["decoded"] - denoised, 4),
    }
