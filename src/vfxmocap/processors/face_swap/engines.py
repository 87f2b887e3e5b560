"""Swap engines behind one interface: prepare a source face once, then swap it into targets.

`GeometricEngine` (built in, no downloads) warps the source face's texture onto the
target's mesh. `InswapperEngine` (in inswapper.py) generates the face with a neural network
when its ONNX files are in the model store. Both paste back through the same masks, colour
match and blending, in `paste()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from vfxmocap.core.errors import InputError
from vfxmocap.media.image import Frame
from vfxmocap.processors.face_swap.blend import (
    BLEND_MARGIN,
    BlendMode,
    alpha_blend,
    blend,
    copy_where,
    fill_in,
    match_color,
    match_sharpness,
    work_box,
)
from vfxmocap.processors.face_swap.frontal import frontal_view
from vfxmocap.processors.face_swap.masks import (
    CLOSED_SOURCE_GROW,
    OPEN_GROW,
    Mask,
    MaskOptions,
    face_mask,
    face_size,
    mouth_hole,
    soft_edge,
)
from vfxmocap.processors.face_swap.shape import transfer_shape
from vfxmocap.processors.face_swap.warp import BAND, backdrop_mesh, warp_backdrop, warp_face
from vfxmocap.vision.faces import Face, box_from_landmarks
from vfxmocap.vision.landmarks import mouth_openness, outline
from vfxmocap.vision.segmentation import skin_outliers

_ROI_MARGIN = 0.25  # of the face box, around the target face
_SOURCE_MOUTH_OPEN = 0.05  # mouth openness over which a source's lips end at an opening
# feather, in face widths, where the patch ends inside the mask (the mouth opening): 3% where
# the source's lips reach it, 4% over a closed source mouth stretched open
_HOLE_BLUR = {True: 0.03, False: 0.04}
# The skin a colour model is learnt from: face without eyes, brows and lips.
# how far out the mask of a face drawn `BAND` past its outline reaches: 0.6 of the way across
# the band, where the feather inside the mask's edge (8% of the face width) leaves the face's
# own outline about half drawn (astronaut / Tom Hanks -> carphone 720p, 24 frames, dlib
# distance to the source: 0.426 / 0.503 with the face drawn to its outline, 0.416 / 0.484)
_REACH = 1.0 + 0.6 * (BAND - 1.0)
SKIN = MaskOptions(kind="regions", regions=["skin"], blur=0.0, forehead=0.35)


class PasteOptions(BaseModel):
    mask: MaskOptions = Field(default_factory=MaskOptions)
    blend: BlendMode = "multiband"
    color_match: bool = True
    sharpness_match: bool = True
    opacity: float = Field(1.0, ge=0, le=1)
    occlusion: bool = False


@dataclass
class SourceFace:
    """A source identity, prepared once: its texture crop, landmarks in crop pixels, and
    whatever the engine derives (an identity embedding for neural engines)."""

    image: Frame
    face: Face  # landmarks relative to `image`
    extra: dict[str, Any] = field(default_factory=dict)
    monochrome: bool = False  # a black-and-white photo: its colour comes from the target


def is_monochrome(image: Frame) -> bool:
    """Whether an RGB image is grey (a black-and-white photo, or one stored as colour): its
    channels differ by under 2 levels on average (JPEG's chroma noise included)."""
    wide = image.astype(np.int16)
    return bool(
        np.abs(wide[..., 0] - wide[..., 1]).mean() < 2
        and np.abs(wide[..., 1] - wide[..., 2]).mean() < 2
    )


def prepare_source(image: Frame, face: Face) -> SourceFace:
    """Crop the source around its face (a texture lookup needs no more) and shift landmarks."""
    h, w = image.shape[:2]
    margin = 0.3 * face.width
    x0, y0 = max(0, int(face.box[0] - margin)), max(0, int(face.box[1] - margin))
    x1, y1 = min(w, int(face.box[2] + margin) + 1), min(h, int(face.box[3] + margin) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise InputError("the source face is too small to use (under 8 pixels)")
    shift = np.array([x0, y0, 0], np.float32)
    local = Face(
        box=face.box - np.array([x0, y0, x0, y0], np.float32),
        landmarks=face.landmarks - shift,
        score=face.score,
    )
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    return SourceFace(crop, local, monochrome=is_monochrome(crop))


_FILL_MAX = 0.15  # of the face width: how far past a tight crop's edge a source is filled in


def complete_edges(source: SourceFace) -> SourceFace:
    """A source cut by its image's edge (an aligned crop cuts the chin or a cheek) filled in
    past the edge, as far as the face is drawn (its band, up to 15% of the face width), by
    inpainting: the mesh draws the skin's shading running on instead of ending in a hard
    line across the chin (a look, not identity: Tom Hanks -> carphone 720p, dlib distance
    to the source 0.504 unfilled, 0.505 filled)."""
    image, face = source.image, source.face
    h, w = image.shape[:2]
    band = outline(face.landmarks, BAND)
    most = int(np.ceil(_FILL_MAX * face.width))
    left, top = (int(np.ceil(-v)) + 2 for v in band.min(axis=0))
    right = int(np.ceil(float(band[:, 0].max()) - (w - 1))) + 2
    bottom = int(np.ceil(float(band[:, 1].max()) - (h - 1))) + 2
    pads = [min(most, max(0, p)) for p in (top, bottom, left, right)]
    if not any(pads):
        return source
    top, bottom, left, right = pads
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    hole = np.full(padded.shape[:2], 255, np.uint8)
    hole[top : top + h, left : left + w] = 0
    fill_in(padded, hole)
    shift = np.array([left, top], np.float32)
    moved = Face(
        box=face.box + np.tile(shift, 2),
        landmarks=face.landmarks + np.append(shift, 0),
        score=face.score,
    )
    return replace(source, image=padded, face=moved)


def turned_to_camera(source: SourceFace) -> SourceFace:
    """A source turned from the camera (8° or more), made frontal with its far cheek drawn
    from its near one (frontal.py); any other as it is."""
    view = frontal_view(source.image, source.face.landmarks)
    if view is None:
        return source
    image, landmarks = view
    face = Face(box=box_from_landmarks(landmarks), landmarks=landmarks, score=source.face.score)
    return replace(source, image=image, face=face)


def target_roi(face: Face, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    h, w = shape[:2]
    margin = _ROI_MARGIN * max(face.width, float(face.box[3] - face.box[1]))
    x0, y0 = max(0, int(face.box[0] - margin)), max(0, int(face.box[1] - margin))
    x1, y1 = min(w, int(face.box[2] + margin) + 1), min(h, int(face.box[3] + margin) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return x0, y0, x1, y1


@dataclass
class Rendered:
    """An engine's swapped face for one ROI: the patch, the pixels it covers, the landmarks
    of the face as drawn (frame pixels), and optionally the ROI of the frame warped to fit
    that face's outline (the backdrop it is blended over)."""

    patch: Frame
    coverage: NDArray[np.uint8]
    landmarks: NDArray[np.float32]
    backdrop: Frame | None = None
    # the source's lips end at an opening of its own: drawn up to the target's (masks.py)
    lips_to_opening: bool = False
    monochrome: bool = False  # drawn from a black-and-white source: colour from the target
    # how far past the landmarks' outline the patch is the face (a scale of the oval): the
    # oval mask reaches that far
    reach: float = 1.0


def paste(
    frame: Frame,
    rendered: Rendered,
    roi: tuple[int, int, int, int],
    opts: PasteOptions,
    keep_out: NDArray[np.float32] | None = None,
) -> None:
    """Blend the rendered patch (the ROI's size) into `frame` in place, inside the face mask
    of its landmarks.

    `keep_out` (frame-sized, 1 = occluder) keeps the frame's pixels where something covers
    the face.
    """
    x0, y0, x1, y1 = roi
    local = rendered.landmarks - np.array([x0, y0, 0], np.float32)
    original = frame[y0:y1, x0:x1]
    # a new outline only makes sense when the whole face is pasted, not only its eyes
    whole = opts.mask.kind != "regions" or "skin" in (opts.mask.regions or ["skin"])
    region = original if rendered.backdrop is None or not whole else rendered.backdrop
    shape = (region.shape[0], region.shape[1])
    mask = face_mask(shape, local, opts.mask, rendered.reach)
    result = region.copy()
    # everything below changes pixels only inside the mask, or (the blend pyramid's wide
    # seam) a few pixels around it: work on that box, not on the whole ROI's margin
    box = work_box(mask, BLEND_MARGIN)
    if box is not None:
        grow = OPEN_GROW if rendered.lips_to_opening else CLOSED_SOURCE_GROW
        hole = mouth_hole(shape, local, opts.mask, grow)
        result[box] = _blend_face(
            rendered.patch[box],
            region[box],
            original[box],
            mask[box],
            rendered.coverage[box],
            None if hole is None else hole[box],
            face_size(local),
            rendered.lips_to_opening,
            opts,
            rendered.monochrome,
        )
    kept = _kept(original, local, opts, None if keep_out is None else keep_out[y0:y1, x0:x1])
    frame[y0:y1, x0:x1] = result if kept is None else alpha_blend(original, result, kept)


def _blend_face(
    patch: Frame,
    region: Frame,
    original: Frame,
    mask: Mask,
    coverage: Mask,
    hole: Mask | None,
    size: float,
    lips: bool,
    opts: PasteOptions,
    monochrome: bool = False,
) -> Frame:
    """The patch colour- and sharpness-matched and blended over `region` inside `mask`
    (all cropped alike); `original` is the frame before any warp."""
    # what the patch covers, less the mouth opening: a narrow fade there, so the lips are
    # the source's right up to the target's teeth or lip line
    drawn = coverage.copy()
    # the blend pyramid spreads the patch a little past the coverage: there it is the region,
    # so nothing the mesh does not draw (black, or the source's surroundings) bleeds in
    patch = patch.copy()
    copy_where(patch, region, coverage == 0)
    if hole is not None:
        drawn[hole > 0] = 0
    inside = np.minimum(mask, drawn)
    if opts.color_match:
        patch = match_color(patch, region, inside, target_chroma=monochrome)
    if opts.sharpness_match:
        # judged with the target's mouth opening in place: the line where the source's lips
        # meet it is detail the output shows, and a sharp source must not draw it crisper
        # than the frame does
        judged = inside
        if hole is not None:
            copy_where(patch, region, hole > 0)
            judged = np.where(hole > 0, mask, inside)
        patch = match_sharpness(patch, original, judged)
    alpha = soft_edge(mask, opts.mask.blur, size) * soft_edge(drawn, _HOLE_BLUR[lips], size)
    return blend(patch, region, alpha, opts.blend, hole)


def _kept(
    original: Frame,
    local: NDArray[np.float32],
    opts: PasteOptions,
    keep_out: NDArray[np.float32] | None,
) -> NDArray[np.float32] | None:
    """Where (1) the frame stays as it was, over the swap and its warped backdrop alike:
    occluders in front of the face, and all of it as opacity goes to 0."""
    kept = np.zeros(original.shape[:2], np.float32) if keep_out is None else keep_out.copy()
    if opts.occlusion:
        skin = face_mask((original.shape[0], original.shape[1]), local, SKIN)
        np.maximum(kept, (skin_outliers(original, skin) > 0.5).astype(np.float32), out=kept)
    if opts.opacity < 1.0:
        kept = 1.0 - opts.opacity * (1.0 - kept)
    return kept if kept.any() else None


class SwapEngine(Protocol):
    name: str

    def prepare(self, image: Frame, face: Face) -> SourceFace: ...

    def render(
        self, frame: Frame, target: Face, source: SourceFace, roi: tuple[int, int, int, int]
    ) -> Rendered:
        """The swapped face for `roi`."""
        ...


class GeometricEngine:
    """Dense mesh warp of the source texture: identity from the source's real pixels and,
    with `shape` > 0, its face shape (outline, jaw, features), the frame around the face
    warped to follow; pose and expression from the target's landmarks. No model files."""

    name = "geometric"

    def __init__(self, shape: float = 1.0) -> None:
        self.shape = shape

    def prepare(self, image: Frame, face: Face) -> SourceFace:
        return turned_to_camera(complete_edges(prepare_source(image, face)))

    def render(
        self, frame: Frame, target: Face, source: SourceFace, roi: tuple[int, int, int, int]
    ) -> Rendered:
        points = source.face.landmarks[:, :2]
        mesh = transfer_shape(target.landmarks, source.face.landmarks, self.shape)
        # the source's own lips reach its mouth opening only where it has one
        lips = mouth_openness(source.face.landmarks) > _SOURCE_MOUTH_OPEN
        if self.shape <= 0:
            patch, coverage = warp_face(source.image, points, mesh, roi)
            return Rendered(
                patch, coverage, mesh, lips_to_opening=lips, monochrome=source.monochrome
            )
        # the face and the frame behind it share one rasterisation of the drawn mesh; the face
        # is drawn a band past its outline, the mask reaching most of the way across it
        behind = backdrop_mesh(target.landmarks, mesh, roi)
        patch, coverage = warp_face(
            source.image, behind.sampled(points), mesh, roi, behind.raster, behind.face
        )
        backdrop = warp_backdrop(frame, target.landmarks, mesh, roi, behind)
        return Rendered(patch, coverage, mesh, backdrop, lips, source.monochrome, _REACH)


def swap_face(
    engine: SwapEngine,
    frame: Frame,
    target: Face,
    source: SourceFace,
    opts: PasteOptions,
    keep_out: NDArray[np.float32] | None = None,
) -> Face | None:
    """Swap one face in place; returns the face as drawn (the geometric engine moves its
    outline to the source's), None when it is too small or off-frame to swap."""
    roi = target_roi(target, frame.shape)
    if roi is None:
        return None
    rendered = engine.render(frame, target, source, roi)
    paste(frame, rendered, roi, opts, keep_out)
    drawn = rendered.landmarks
    return replace(target, box=box_from_landmarks(drawn), landmarks=drawn, embedding=None)
