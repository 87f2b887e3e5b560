"""The neural portrait engine: LivePortrait's networks as ONNX (FasterLivePortrait's export).

The portrait's face is cropped (a square around the face, 2.3x its size, roll undone) and
encoded once: an appearance volume (1x32x16x64x64) and its implicit keypoints
`x_s = scale * (kp @ R + exp) + t`. Each driving frame's face gives the same quantities;
the portrait's keypoints move by how far the driver moved from its neutral frame
(rotation `R_d @ R_d0^T @ R_s`, expression `exp_s + (exp_d - exp_d0)`, scale ratio,
translation delta with depth zeroed). The stitching network then keeps the crop's border
(shoulders, background) where the portrait had it, the eye and lip retargeting networks
set eye and mouth opening when the user scales them, and the warping + SPADE decoder
renders the 512 px crop, pasted back into the full-resolution portrait through a soft
mask. Faces and landmarks come from the MediaPipe analyzer, not InsightFace.

The maths follows LivePortrait (KwaiVGI/LivePortrait, `camera.py`, `live_portrait_wrapper.py`,
`live_portrait_pipeline.py`, `utils/crop.py`); the code is written for this project.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.errors import ModelMissing
from vfxmocap.core.log import get_logger
from vfxmocap.media.image import Frame
from vfxmocap.models.onnx_runtime import session
from vfxmocap.models.store import ModelStore
from vfxmocap.portrait.engine import AnimateOptions, Driven, FaceEdits, Region
from vfxmocap.portrait.faces import portrait_faces
from vfxmocap.vision.faces import Face, FaceAnalyzer, MediaPipeFaceAnalyzer
from vfxmocap.vision.filters import OneEuroFilter
from vfxmocap.vision.landmarks import (
    LEFT_BROW,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    RIGHT_BROW,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
    mouth_openness,
)

log = get_logger("portrait.liveportrait")

MODEL = "liveportrait"
APPEARANCE = "appearance_feature_extractor.onnx"
MOTION = "motion_extractor.onnx"
WARPING = "warping_spade.onnx"
STITCHING = "stitching.onnx"
STITCHING_EYE = "stitching_eye.onnx"
STITCHING_LIP = "stitching_lip.onnx"

NUM_KP = 21
# LivePortrait's keypoints that carry the lips and the eyes (its `animation_region` lists).
LIP_KP = (6, 12, 14, 17, 19, 20)
EYE_KP = (11, 13, 15, 16, 18)
# The motion extractor's outputs, in the order of the ONNX Runtime export.
MOTION_OUTPUTS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")


@dataclass(frozen=True)
class CropSpec:
    scale: float  # crop side / the face's extent
    vy: float  # shift along the face's down axis, in crop sides (negative: up)
    rotate: bool  # turn the face upright


# LivePortrait's crops: the source at 2.3x the face with roll undone, the driver at 2.2x as
# it stands (its roll is motion); both shifted up to take in the forehead.
SOURCE_CROP = CropSpec(2.3, -0.125, rotate=True)
DRIVER_CROP = CropSpec(2.2, -0.1, rotate=False)
CROP = 512  # the decoder's output; the extractors take it at 256
NET_INPUT = 256

Vector = NDArray[np.float64]
Keypoints = NDArray[np.float64]  # (21, 3)
Matrix = NDArray[np.float64]


# --- keypoint maths ---------------------------------------------------------------------


def bins_to_degrees(logits: NDArray[np.floating[Any]]) -> float:
    """An angle from the motion extractor's 66 bins: the softmax's expected bin, 3 degrees
    a bin, centred at 97.5 (LivePortrait's `headpose_pred_to_degree`)."""
    x = np.asarray(logits, dtype=np.float64).reshape(-1)
    p = np.exp(x - x.max())
    p /= p.sum()
    return float(np.dot(p, np.arange(x.size)) * 3.0 - 97.5)


def rotation_matrix(pitch: float, yaw: float, roll: float) -> Matrix:
    """LivePortrait's rotation for row-vector keypoints (`kp @ R`): (Rz·Ry·Rx)ᵀ, degrees."""
    x, y, z = (math.radians(a) for a in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    rotation: Matrix = (rz @ ry @ rx).T
    return rotation


def rotation_power(rotation: Matrix, amount: float) -> Matrix:
    """The rotation by `amount` times the angle of `rotation`, about the same axis
    (0: none, 1: itself) — how `head_scale` scales a relative head turn."""
    if amount == 1.0:
        return rotation
    cos = float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.eye(3)
    skew = (rotation - rotation.T) / (2.0 * math.sin(angle)) if angle < math.pi - 1e-6 else None
    if skew is None:  # a half turn: the axis is the eigenvector of eigenvalue 1
        values, vectors = np.linalg.eig(rotation)
        axis = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    else:
        axis = np.array([skew[2, 1], skew[0, 2], skew[1, 0]])
    axis /= max(float(np.linalg.norm(axis)), 1e-12)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    theta = angle * amount
    powered: Matrix = np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * (k @ k)
    return powered


def transform_keypoints(
    kp: Keypoints, rotation: Matrix, exp: Keypoints, scale: float, t: Vector
) -> Keypoints:
    """`scale · (kp·R + exp) + t`, with t's depth left out (LivePortrait's Eqn. 2)."""
    x: Keypoints = scale * (kp @ rotation + exp)
    x[:, :2] += t[:2]
    return x


@dataclass(frozen=True)
class Motion:
    """What the motion extractor says about one face crop (angles in degrees)."""

    pitch: float
    yaw: float
    roll: float
    t: Vector  # (3,)
    exp: Keypoints  # (21, 3)
    scale: float
    kp: Keypoints  # (21, 3) canonical keypoints

    @property
    def rotation(self) -> Matrix:
        return rotation_matrix(self.pitch, self.yaw, self.roll)

    def keypoints(self) -> Keypoints:
        return transform_keypoints(self.kp, self.rotation, self.exp, self.scale, self.t)

    @classmethod
    def from_outputs(cls, outputs: dict[str, NDArray[Any]]) -> Motion:
        def arr(name: str) -> Vector:
            return np.asarray(outputs[name], dtype=np.float64).reshape(-1)

        return cls(
            pitch=bins_to_degrees(outputs["pitch"]),
            yaw=bins_to_degrees(outputs["yaw"]),
            roll=bins_to_degrees(outputs["roll"]),
            t=arr("t"),
            exp=arr("exp").reshape(NUM_KP, 3),
            scale=float(arr("scale")[0]),
            kp=arr("kp").reshape(NUM_KP, 3),
        )

    def packed(self) -> Vector:
        """The driving signal as one vector in comparable units (radians, keypoint units,
        log scale), for smoothing; the canonical keypoints are the portrait's, not packed."""
        angles = np.radians([self.pitch, self.yaw, self.roll])
        return np.concatenate([angles, self.t, self.exp.reshape(-1), [math.log(self.scale)]])

    def unpacked(self, vector: Vector) -> Motion:
        pitch, yaw, roll = np.degrees(vector[:3])
        exp = vector[6 : 6 + 3 * NUM_KP].reshape(NUM_KP, 3)
        return Motion(
            float(pitch), float(yaw), float(roll), vector[3:6], exp, math.exp(vector[-1]), self.kp
        )


def _region_keypoints(region: Region) -> tuple[int, ...]:
    """The keypoints whose expression a region transfers."""
    if region in ("all", "expression"):
        return tuple(range(NUM_KP))
    return {"lips": LIP_KP, "eyes": EYE_KP}.get(region, ())


def relative_keypoints(
    source: Motion, driving: Motion, neutral: Motion, options: AnimateOptions
) -> Keypoints:
    """The portrait's keypoints moved as the driver moved from its neutral frame:
    R = (R_d·R_d0ᵀ)^head_scale · R_s, exp = exp_s + expression_scale·(exp_d − exp_d0) on the
    region's keypoints, scale ratio and translation delta (depth zeroed) times head_scale."""
    pose = options.region in ("all", "pose")
    h = options.head_scale if pose else 0.0
    relative = driving.rotation @ neutral.rotation.T
    rotation = rotation_power(relative, h) @ source.rotation
    exp = source.exp.copy()
    moved = list(_region_keypoints(options.region))
    exp[moved] += options.expression_scale * (driving.exp[moved] - neutral.exp[moved])
    scale = source.scale * (driving.scale / neutral.scale) ** h
    t = source.t + h * (driving.t - neutral.t)
    t[2] = 0.0
    return transform_keypoints(source.kp, rotation, exp, scale, t)


def stitch(x_driving: Keypoints, delta: NDArray[np.floating[Any]]) -> Keypoints:
    """Apply the stitching network's output: 63 keypoint offsets, then tx, ty for all."""
    d = np.asarray(delta, dtype=np.float64).reshape(-1)
    x: Keypoints = x_driving + d[: 3 * NUM_KP].reshape(NUM_KP, 3)
    x[:, :2] += d[3 * NUM_KP : 3 * NUM_KP + 2]
    return x


def stitching_input(x_source: Keypoints, x_driving: Keypoints) -> NDArray[np.float32]:
    feed: NDArray[np.float32] = np.concatenate([x_source.reshape(-1), x_driving.reshape(-1)])
    return feed[None].astype(np.float32)


def retarget_input(x_source: Keypoints, ratios: Vector) -> NDArray[np.float32]:
    """The eye (63 + 3) or lip (63 + 2) network's input: the portrait's keypoints, its own
    opening ratio(s), then the wanted opening."""
    feed: NDArray[np.float32] = np.concatenate([x_source.reshape(-1), ratios])
    return feed[None].astype(np.float32)


# --- eye and lip opening from the face mesh (LivePortrait measures its own landmarks) ----

_RIGHT_LIDS, _LEFT_LIDS = (159, 145), (386, 374)


def eye_open_ratios(landmarks: NDArray[np.floating[Any]]) -> Vector:
    """Lid gap over eye width, the image-left eye (the person's right) first."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]

    def ratio(lids: tuple[int, int], corners: tuple[int, int]) -> float:
        width = float(np.linalg.norm(lm[corners[0]] - lm[corners[1]]))
        return float(np.linalg.norm(lm[lids[0]] - lm[lids[1]])) / max(width, 1e-6)

    return np.array(
        [
            ratio(_RIGHT_LIDS, (RIGHT_EYE_OUTER, RIGHT_EYE_INNER)),
            ratio(_LEFT_LIDS, (LEFT_EYE_OUTER, LEFT_EYE_INNER)),
        ]
    )


# --- crop and paste-back ----------------------------------------------------------------


def face_crop(landmarks: NDArray[np.floating[Any]], spec: CropSpec, size: int = CROP) -> Matrix:
    """The 2x3 matrix from image pixels to a `size` px square crop around the face.

    As LivePortrait's crop: the face's down axis runs from the eyes' centre to the mouth's;
    the square is `spec.scale` times the face's extent along those axes (mesh points from
    the brows down, as its 2-D landmarks cover), moved by `spec.vy` of its side along the
    axis, and turned upright when `spec.rotate`."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    eyes = (lm[[RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER]]).mean(axis=0)
    mouth = (lm[MOUTH_RIGHT] + lm[MOUTH_LEFT]) / 2
    down = mouth - eyes
    down = down / norm if (norm := float(np.linalg.norm(down))) > 1e-3 else np.array([0.0, 1.0])
    across = np.array([down[1], -down[0]])  # image x for an upright face
    axes = np.stack([across, down])
    brow_line = float(np.min(lm[RIGHT_BROW + LEFT_BROW] @ down))
    points = lm[lm @ down >= brow_line]
    projected = points @ axes.T
    lo, hi = projected.min(axis=0), projected.max(axis=0)
    side = float(np.max(hi - lo)) * spec.scale
    center = axes.T @ ((lo + hi) / 2) + down * (spec.vy * side)
    s = size / max(side, 1e-6)
    rotation = axes if spec.rotate else np.eye(2)
    linear = s * rotation
    offset = size / 2 - linear @ center
    matrix: Matrix = np.hstack([linear, offset[:, None]])
    return matrix


def crop_image(frame: Frame, matrix: Matrix, size: int) -> Frame:
    crop: Frame = cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return crop


@cache
def crop_mask(size: int = CROP) -> NDArray[np.float32]:
    """The paste-back mask in crop space: 1 over the middle, easing to 0 over the outer
    eighth of the square, so the pasted crop has no visible edge."""
    ramp = np.clip(np.minimum(np.arange(size), np.arange(size)[::-1]) / (size / 8), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    mask: NDArray[np.float32] = np.outer(ramp, ramp).astype(np.float32)
    mask.flags.writeable = False
    return mask


@dataclass(frozen=True)
class PasteBack:
    """Where one face's crop goes in the portrait: its box there, the crop-to-box matrix
    and the mask warped into the box once."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the portrait
    matrix: Matrix  # crop pixels -> box pixels
    mask: NDArray[np.float32]  # (h, w, 1)

    @classmethod
    def build(cls, crop_matrix: Matrix, shape: tuple[int, ...], size: int = CROP) -> PasteBack:
        inverse = cv2.invertAffineTransform(crop_matrix)
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
        mapped = corners @ inverse[:, :2].T + inverse[:, 2]
        h, w = shape[:2]
        x0, y0 = (max(0, math.floor(v)) for v in mapped.min(axis=0))
        x1, y1 = min(w, math.ceil(mapped[:, 0].max())), min(h, math.ceil(mapped[:, 1].max()))
        matrix = inverse.copy()
        matrix[:, 2] -= (x0, y0)
        mask = cv2.warpAffine(crop_mask(size), matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        return cls((x0, y0, x1, y1), matrix, mask[..., None])

    def paste(self, frame: Frame, crop: Frame) -> None:
        """Blend the crop into `frame` in place, through the mask."""
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            return
        warped = cv2.warpAffine(crop, self.matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        region = frame[y0:y1, x0:x1].astype(np.float32)
        blended = region + self.mask * (warped.astype(np.float32) - region)
        frame[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)


# --- providers: 5-D GridSample ----------------------------------------------------------

# Providers whose GridSample is 4-D only, so they cannot run warping_spade's 5-D nodes:
# CoreML and TensorRT (FasterLivePortrait needs a TensorRT plugin for them), and ONNX
# Runtime's CUDA kernel ("Only 4-D tensor is supported"; FasterLivePortrait's README asks
# for a source build of a branch). The CPU kernel is N-D since ONNX Runtime 1.17.
NO_VOLUMETRIC_GRIDSAMPLE = {
    "CUDAExecutionProvider": "CUDA",
    "CoreMLExecutionProvider": "CoreML",
    "TensorrtExecutionProvider": "TensorRT",
}
# TensorRT's own default exclusions, kept when GridSample is added to them.
_TRT_DEFAULT_EXCLUDED = "NonMaxSuppression,NonZero,RoiAlign"

Providers = list[tuple[str, dict[str, Any]]]


def gridsample_providers(providers: Providers) -> Providers:
    """The providers for a model with 5-D GridSample nodes. ONNX Runtime gives each node to
    the first provider that takes it, so with CPU in the list the nodes an accelerator
    declines run on the CPU and the rest stays on the accelerator. TensorRT is told to
    leave GridSample alone (it would claim the node and fail to build); a provider that
    claims the node and fails when it runs is caught by `CpuFallbackSession`. The user is
    told either way, never silently."""
    names = [name for name, _ in providers]
    lacking = [NO_VOLUMETRIC_GRIDSAMPLE[name] for name in names if name in NO_VOLUMETRIC_GRIDSAMPLE]
    if not lacking:
        return providers
    log.warning(
        "%s cannot run the 5-D GridSample nodes of LivePortrait's warping network: those "
        "nodes run on the CPU (slower; the rest stays on %s)",
        " and ".join(lacking),
        NO_VOLUMETRIC_GRIDSAMPLE.get(names[0], names[0]),
    )
    adjusted: Providers = []
    for name, options in providers:
        if name == "TensorrtExecutionProvider":
            excluded = options.get("trt_op_types_to_exclude", _TRT_DEFAULT_EXCLUDED)
            ops = [op for op in str(excluded).split(",") if op]
            options = {**options, "trt_op_types_to_exclude": ",".join([*ops, "GridSample"])}
        adjusted.append((name, options))
    if "CPUExecutionProvider" not in names:
        adjusted.append(("CPUExecutionProvider", {}))
    return adjusted


class CpuFallbackSession:
    """A session whose accelerator took a node it then cannot run (a 4-D-only GridSample
    kernel given 5-D input fails at run time, not at load): it says so once and runs the
    model on the CPU from then on. Any other error is raised as it is."""

    def __init__(self, load: Callable[[bool], Any], what: str) -> None:
        self._load = load  # load(cpu_only) -> session
        self.what = what
        self.inner = load(False)
        self.on_cpu = False

    def get_inputs(self) -> Any:
        return self.inner.get_inputs()

    def get_outputs(self) -> Any:
        return self.inner.get_outputs()

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> Any:
        try:
            return self.inner.run(output_names, feeds)
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            if self.on_cpu or "4-D" not in str(exc):
                raise
            log.warning(
                "%s: the accelerator cannot run its 5-D GridSample (%s); running the whole "
                "model on the CPU from now on",
                self.what,
                " ".join(str(exc).split())[:200],
            )
            self.inner, self.on_cpu = self._load(True), True
            return self.inner.run(output_names, feeds)


# --- the networks -----------------------------------------------------------------------


# The exports' input shapes, by file: what the engine feeds each network.
SIGNATURES: dict[str, tuple[tuple[int, ...], ...]] = {
    APPEARANCE: ((1, 3, NET_INPUT, NET_INPUT),),
    MOTION: ((1, 3, NET_INPUT, NET_INPUT),),
    WARPING: ((1, 32, 16, 64, 64), (1, NUM_KP, 3), (1, NUM_KP, 3)),
    STITCHING: ((1, 6 * NUM_KP),),
    STITCHING_EYE: ((1, 3 * NUM_KP + 3),),
    STITCHING_LIP: ((1, 3 * NUM_KP + 2),),
}


def _check_signature(path: Path, sess: Any) -> None:
    """ModelMissing when a file is not the export it is named for (another model put in
    its place): its inputs must match in number and in every fixed dimension."""
    wanted = SIGNATURES[path.name]
    found = [tuple(i.shape) for i in sess.get_inputs()]
    fits = len(found) == len(wanted) and all(
        len(f) == len(w)
        and all(not isinstance(d, int) or d == e for d, e in zip(f, w, strict=True))
        for f, w in zip(found, wanted, strict=True)
    )
    if not fits:
        raise ModelMissing(
            f"{path}: not LivePortrait's {path.stem} (inputs {found}, expected {list(wanted)})",
            hint="Place the file of this name from FasterLivePortrait's liveportrait_onnx.",
        )


class Networks:
    """The six ONNX sessions, fed by position (the exports' input names differ between
    versions) and read by output name where the export names them."""

    def __init__(self, files: dict[str, Path], device: str | None = None) -> None:
        def load(name: str) -> Any:
            return session(files[name], device)

        def load_warping(cpu_only: bool) -> Any:
            if cpu_only:
                return session(files[WARPING], "cpu")
            return session(files[WARPING], device, adjust=gridsample_providers)

        self.appearance = load(APPEARANCE)
        self.motion = load(MOTION)
        self.warping = CpuFallbackSession(load_warping, WARPING)
        self.stitching = load(STITCHING)
        self.eye = load(STITCHING_EYE)
        self.lip = load(STITCHING_LIP)
        for name, sess in zip(SIGNATURES, self.sessions(), strict=True):
            _check_signature(files[name], sess)
        outputs = [o.name for o in self.motion.get_outputs()]
        self._motion_names = outputs if set(MOTION_OUTPUTS) <= set(outputs) else None

    def sessions(self) -> tuple[Any, ...]:
        """In SIGNATURES' order."""
        return (self.appearance, self.motion, self.warping, self.stitching, self.eye, self.lip)

    @staticmethod
    def _run(sess: Any, *inputs: NDArray[Any]) -> list[NDArray[Any]]:
        feeds = {i.name: x for i, x in zip(sess.get_inputs(), inputs, strict=True)}
        result: list[NDArray[Any]] = sess.run(None, feeds)
        return result

    def feature(self, crop_rgb: Frame) -> NDArray[np.float32]:
        return self._run(self.appearance, _blob(crop_rgb))[0]

    def motion_of(self, crop_rgb: Frame) -> Motion:
        values = self._run(self.motion, _blob(crop_rgb))
        names = self._motion_names or list(MOTION_OUTPUTS)
        return Motion.from_outputs(dict(zip(names, values, strict=True)))

    def render(
        self, feature: NDArray[np.float32], x_source: Keypoints, x_driving: Keypoints
    ) -> Frame:
        """The decoder's 512 px crop, BGR uint8 (its inputs: feature, driving, source)."""
        kp_d = x_driving[None].astype(np.float32)
        kp_s = x_source[None].astype(np.float32)
        out = self._run(self.warping, feature, kp_d, kp_s)[0][0]
        rgb = np.clip(out.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        bgr: Frame = np.ascontiguousarray(rgb[..., ::-1])
        return bgr

    def stitch_delta(self, x_source: Keypoints, x_driving: Keypoints) -> NDArray[np.float32]:
        return self._run(self.stitching, stitching_input(x_source, x_driving))[0]

    def eye_delta(self, x_source: Keypoints, ratios: Vector) -> Keypoints:
        out = self._run(self.eye, retarget_input(x_source, ratios))[0]
        return np.asarray(out, np.float64).reshape(NUM_KP, 3)

    def lip_delta(self, x_source: Keypoints, ratios: Vector) -> Keypoints:
        out = self._run(self.lip, retarget_input(x_source, ratios))[0]
        return np.asarray(out, np.float64).reshape(NUM_KP, 3)


def _blob(crop_rgb: Frame) -> NDArray[np.float32]:
    """A crop as the extractors take it: 1x3x256x256 RGB in [0, 1]."""
    if crop_rgb.shape[0] != NET_INPUT:
        crop_rgb = cv2.resize(crop_rgb, (NET_INPUT, NET_INPUT), interpolation=cv2.INTER_AREA)
    blob: NDArray[np.float32] = (crop_rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob)


# --- expression editing -----------------------------------------------------------------

# Per unit of a slider: (keypoint, axis, offset to its expression). Adapted from
# AdvancedLivePortrait's editor (its slider units rescaled to FaceEdits' ranges: smile 1 =
# its 1.0, aaa 1 = its 100, eee/woo/eyebrow 1 = its 15, blink 1 = its eyes -20, wink 1 =
# its 25, gaze 1 = its pupil 15).
Offsets = tuple[tuple[int, int, float], ...]
_EDITS: dict[str, Offsets] = {
    "smile": (
        (20, 1, -0.01), (14, 1, -0.02), (17, 1, 0.0065), (17, 2, 0.003),
        (13, 1, -0.00275), (16, 1, -0.00275), (3, 1, -0.0035), (7, 1, -0.0035),
    ),
    "aaa": ((19, 1, 0.1), (19, 2, 0.01), (17, 1, -0.01)),
    "eee": ((20, 2, -0.015), (20, 1, -0.015), (14, 1, -0.015)),
    "woo": ((14, 1, 0.015), (3, 1, -0.0075), (7, 1, -0.0075), (17, 2, -0.0075)),
    "blink": (
        (11, 1, 0.02), (13, 1, -0.006), (15, 1, 0.02), (16, 1, -0.006),
        (1, 1, 0.005), (2, 1, -0.005),
    ),
    "wink_right": (
        (11, 1, 0.025), (13, 1, -0.0075), (17, 0, 0.0075), (17, 1, 0.0075), (3, 1, -0.0075),
    ),
    "wink_left": (
        (15, 1, 0.025), (16, 1, -0.0075), (17, 0, -0.0075), (17, 1, 0.0075), (7, 1, -0.0075),
    ),
    "gaze_y": (
        (11, 1, -0.0075), (15, 1, -0.0075), (13, 1, -0.00225), (16, 1, -0.00225),
        (1, 1, 0.001875), (2, 1, -0.001875),
    ),
}  # fmt: skip
# Sliders whose two directions move different keypoints.
_SIGNED_EDITS: dict[str, tuple[Offsets, Offsets]] = {  # (positive, negative) per unit
    "gaze_x": (((11, 0, 0.0105), (15, 0, 0.015)), ((11, 0, 0.015), (15, 0, 0.0105))),
    "eyebrow": (
        ((1, 1, 0.015), (2, 1, -0.015)),
        ((1, 0, -0.01), (2, 0, 0.01), (1, 1, 0.003), (2, 1, -0.003)),
    ),
}
# Head turns that go with a shape, LivePortrait degrees per unit (AdvancedLivePortrait's).
_EDIT_TURNS = {
    "aaa": (-5.0, 0.0, 0.0),
    "wink_right": (0.0, -2.5, -2.5),
    "wink_left": (0.0, 2.5, 2.5),
}
_UNIT_RANGE = {"blink": (0.0, 1.0), "wink_left": (0.0, 1.0), "wink_right": (0.0, 1.0)}
# FaceEdits' angles follow HeadPose (yaw to the image's right, pitch up, roll
# counter-clockwise); LivePortrait's keypoints have y down, which flips all three.
_ANGLE_SIGN = -1.0


def edited_motion(motion: Motion, edits: FaceEdits) -> Motion:
    """The portrait's motion with the sliders applied: expression offsets and head turns."""
    exp = motion.exp.copy()
    turn = np.zeros(3)  # pitch, yaw, roll in LivePortrait degrees
    for name in (*_EDITS, *_SIGNED_EDITS):
        lo, hi = _UNIT_RANGE.get(name, (-1.0, 1.0))
        value = float(np.clip(getattr(edits, name), lo, hi))
        if value == 0.0:
            continue
        offsets = _EDITS.get(name) or _SIGNED_EDITS[name][0 if value > 0 else 1]
        for kp, axis, per_unit in offsets:
            exp[kp, axis] += per_unit * value
        turn += np.array(_EDIT_TURNS.get(name, (0.0, 0.0, 0.0))) * value
    angles = np.clip([edits.pitch, edits.yaw, edits.roll], -30.0, 30.0) * _ANGLE_SIGN + turn
    return Motion(
        motion.pitch + float(angles[0]),
        motion.yaw + float(angles[1]),
        motion.roll + float(angles[2]),
        motion.t.copy(),
        exp,
        motion.scale,
        motion.kp,
    )


# --- the engine -------------------------------------------------------------------------


@dataclass
class SourceFace:
    """One animated face of the portrait, encoded once."""

    motion: Motion
    x_s: Keypoints
    feature: NDArray[np.float32]
    eye_ratios: Vector  # (2,)
    lip_ratio: float
    paste: PasteBack


@dataclass(frozen=True)
class DriverFrame:
    """What one driving frame's largest face gives the engine."""

    motion: Motion
    eye: float  # mean eye opening
    lip: float


class LivePortraitEngine:
    """A portrait animated by LivePortrait's networks (see the module docstring)."""

    name = "liveportrait"

    def __init__(
        self,
        source_bgr: Frame,
        options: AnimateOptions,
        *,
        faces: str = "largest",
        device: str | None = None,
        analyzer: FaceAnalyzer | None = None,
        store: ModelStore | None = None,
    ) -> None:
        files = (store or ModelStore()).require(MODEL)  # exit 4 before any other work
        self.options = options
        self.source = np.ascontiguousarray(source_bgr)
        self._own_analyzer = analyzer is None
        self.analyzer: FaceAnalyzer = analyzer or MediaPipeFaceAnalyzer()
        try:
            chosen = portrait_faces(self.analyzer, self.source, faces)
            self.networks = Networks(files, device)
            self.faces = [self._encode(face) for face in chosen]
        except BaseException:
            self.close()
            raise
        self._neutral: DriverFrame | None = None
        self._filter = OneEuroFilter()
        self._last: Frame = self.source.copy()

    def _encode(self, face: Face) -> SourceFace:
        matrix = face_crop(face.landmarks, SOURCE_CROP)
        crop = cv2.cvtColor(crop_image(self.source, matrix, CROP), cv2.COLOR_BGR2RGB)
        motion = self.networks.motion_of(crop)
        return SourceFace(
            motion=motion,
            x_s=motion.keypoints(),
            feature=self.networks.feature(crop),
            eye_ratios=eye_open_ratios(face.landmarks),
            lip_ratio=mouth_openness(face.landmarks),
            paste=PasteBack.build(matrix, self.source.shape),
        )

    # --- the driver ---------------------------------------------------------------------

    def _read_driver(self, driving_bgr: Frame) -> tuple[DriverFrame | None, int]:
        """The largest face of a driving frame, and how many faces it has."""
        rgb = cv2.cvtColor(driving_bgr, cv2.COLOR_BGR2RGB)
        boxes = self.analyzer.detect(rgb, tiles=False)
        if not boxes:
            return None, 0
        box = max(boxes, key=lambda b: float((b[0][2] - b[0][0]) * (b[0][3] - b[0][1])))[0]
        face = self.analyzer.landmarks(rgb, box)
        if face is None:
            return None, len(boxes)
        matrix = face_crop(face.landmarks, DRIVER_CROP)
        motion = self.networks.motion_of(crop_image(rgb, matrix, CROP))
        eye = float(eye_open_ratios(face.landmarks).mean())
        return DriverFrame(motion, eye, mouth_openness(face.landmarks)), len(boxes)

    def set_neutral(self, driving: Frame) -> bool:
        frame, _ = self._read_driver(driving)
        if frame is None:
            return False
        self._neutral = frame
        self._filter.reset()
        return True

    def drive(self, driving: Frame, t: float) -> Driven:
        frame, count = self._read_driver(driving)
        if frame is None:
            return Driven(self._last.copy(), False, count)
        if self._neutral is None:
            self._neutral = frame
        if self.options.smoothing:
            smooth = self._filter(frame.motion.packed(), t)
            frame = DriverFrame(frame.motion.unpacked(smooth), frame.eye, frame.lip)
        neutral = self._neutral
        out = self._render(lambda face: self.driven_keypoints(face, frame, neutral))
        self._last = out
        return Driven(out.copy(), True, count)

    # --- keypoints ----------------------------------------------------------------------

    def driven_keypoints(
        self, face: SourceFace, frame: DriverFrame, neutral: DriverFrame
    ) -> Keypoints:
        """Relative motion, then eye/lip retargeting, then stitching (LivePortrait's
        order: stitching sees the final keypoints)."""
        x = relative_keypoints(face.motion, frame.motion, neutral.motion, self.options)
        x = x + self._retarget(face, frame, neutral)
        return self._stitched(face, x)

    def _stitched(self, face: SourceFace, x: Keypoints) -> Keypoints:
        if not self.options.stitching:
            return x
        return stitch(x, self.networks.stitch_delta(face.x_s, x))

    def _retarget(self, face: SourceFace, frame: DriverFrame, neutral: DriverFrame) -> Keypoints:
        """The eye and lip networks' correction, so that the portrait's opening changes by
        `ratio` times the driver's change from neutral. The expression transfer already
        carries `expression_scale` times that change; the networks add the difference
        (zero, and not run, at the defaults)."""
        o, nets = self.options, self.networks
        delta = np.zeros((NUM_KP, 3))
        lip = np.array([face.lip_ratio])
        parts = (
            ("eyes", o.eye_ratio, frame.eye - neutral.eye, face.eye_ratios, nets.eye_delta),
            ("lips", o.lip_ratio, frame.lip - neutral.lip, lip, nets.lip_delta),
        )
        for part, ratio, change, own, network in parts:
            if o.region not in ("all", "expression", part):
                continue
            wanted, carried = ratio * change, o.expression_scale * change
            if abs(wanted - carried) < 1e-6:
                continue
            base = float(own.mean())
            for sign, opening in ((1.0, wanted), (-1.0, carried)):
                ratios = np.append(own, max(0.0, base + opening))
                delta += sign * network(face.x_s, ratios)
        return delta

    # --- output -------------------------------------------------------------------------

    def _render(self, keypoints_for: Callable[[SourceFace], Keypoints]) -> Frame:
        out = self.source.copy()
        for face in self.faces:
            crop = self.networks.render(face.feature, face.x_s, keypoints_for(face))
            face.paste.paste(out, crop)
        return out

    def edit(self, edits: FaceEdits) -> Frame:
        if edits.is_identity():
            return self.source.copy()
        return self._render(
            lambda face: self._stitched(face, edited_motion(face.motion, edits).keypoints())
        )

    def close(self) -> None:
        if self._own_analyzer and hasattr(self.analyzer, "close"):
            self.analyzer.close()
        self._own_analyzer = False
        self.faces = []
