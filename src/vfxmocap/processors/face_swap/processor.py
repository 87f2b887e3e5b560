"""The face swap frame processor: one object serves still images, video files and live frames.

`prepare(SwapSetup)` analyses the sources once (an error if a source has no face, before any
target work); `process()` tracks faces across frames, picks which source goes where (once
per track) and swaps, in two halves a video overlaps: `analyze()` (tracking, MediaPipe)
and `render()` (drawing). State (tracks, choices, counters) lives in `SwapState`, so a live
stream and a video file are processed the same way.
"""

from __future__ import annotations

from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.core.log import get_logger
from vfxmocap.media.image import Frame, read_image
from vfxmocap.processors.face_swap.engines import (
    GeometricEngine,
    PasteOptions,
    SourceFace,
    SwapEngine,
    swap_face,
)
from vfxmocap.processors.face_swap.enhancer import ENHANCERS, FaceEnhancer
from vfxmocap.processors.face_swap.inswapper import InswapperEngine
from vfxmocap.processors.face_swap.masks import MaskOptions
from vfxmocap.processors.face_swap.selection import Selection, TrackChoices, parse_selection
from vfxmocap.vision.faces import Face, MediaPipeFaceAnalyzer
from vfxmocap.vision.identity import MeshShapeEmbedder
from vfxmocap.vision.segmentation import HandTracker, PersonSegmenter, hand_mask
from vfxmocap.vision.tracking import FaceTracker, TrackerOptions

log = get_logger("face_swap")


class SwapOptions(BaseModel):
    engine: Literal["geometric", "inswapper"] = "geometric"
    faces: str = Field(
        "all", max_length=256, description="all, largest, 0,2, map:SRC=TGT,... or reference."
    )
    source_face: int = Field(0, ge=0, description="Which face of a multi-face source image.")
    shape: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Geometric engine: how far the source's face shape (outline, jaw, "
        "cheeks, nose, where its eyes, brows and mouth sit) replaces the target's.",
    )
    mask: MaskOptions = Field(default_factory=MaskOptions)
    blend: Literal["multiband", "poisson", "feather"] = "multiband"
    color_match: bool = True
    sharpness_match: bool = Field(
        True,
        description="Match the swapped face's fine detail to the frame's: a source sharper "
        "than the frame is blurred to it, a softer one sharpened.",
    )
    opacity: float = Field(1.0, ge=0, le=1)
    occlusion: bool = Field(False, description="Keep hands and objects in front of the face.")
    enhance: bool = Field(False, description="Restore the swapped face with GFPGAN/CodeFormer.")
    tracking: TrackerOptions = Field(default_factory=TrackerOptions)

    def paste(self) -> PasteOptions:
        return PasteOptions(
            mask=self.mask,
            blend=self.blend,
            color_match=self.color_match,
            sharpness_match=self.sharpness_match,
            opacity=self.opacity,
            occlusion=self.occlusion,
        )


@dataclass
class SwapStats:
    frames: int = 0
    faces_swapped: int = 0
    frames_without_faces: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "faces_swapped": self.faces_swapped,
            "frames_without_faces": self.frames_without_faces,
        }


class SwapSetup(BaseModel):
    """What `prepare` needs: the source faces, optional reference faces, how to swap."""

    sources: list[str] = Field(min_length=1, description="Source face image(s).")
    references: list[str] = Field(
        default_factory=list, description="Per source, a photo of the target face it replaces."
    )
    options: SwapOptions = Field(default_factory=SwapOptions)
    live: bool = Field(
        True, description="Camera frames: faces are large, so no tile pass for small ones."
    )


@dataclass
class SwapState:
    options: SwapOptions
    engine: SwapEngine
    sources: list[SourceFace]
    analyzer: MediaPipeFaceAnalyzer
    tracker: FaceTracker
    choices: TrackChoices
    enhancer: FaceEnhancer | None = None
    segmenter: PersonSegmenter | None = None
    hands: HandTracker | None = None
    stats: SwapStats = field(default_factory=SwapStats)

    def close(self) -> None:
        self.analyzer.close()
        for model in (self.segmenter, self.hands):
            if model is not None:
                model.close()


@dataclass(frozen=True)
class SwapPlan:
    """One frame's swaps, as `FaceSwapProcessor.analyze` planned them: the frame, each face
    with the index of its source, and where occluders keep the frame (1), if looked for."""

    frame: Frame
    pairs: list[tuple[Face, int]]
    keep_out: NDArray[np.float32] | None = None


def load_engine(options: SwapOptions) -> SwapEngine:
    if options.engine == "geometric":
        return GeometricEngine(shape=options.shape)
    return InswapperEngine.from_store()


def _first_face(
    analyzer: MediaPipeFaceAnalyzer, path: str | Path, index: int, role: str
) -> tuple[Frame, Face]:
    image = read_image(path)
    faces = analyzer.analyze_photo(image, tiles=True)  # a group photo, or a tight face crop
    if not faces:
        raise InputError(
            f"{path}: no face found in the {role} image",
            hint=f"Use a {role} photo with a clear, unobstructed face.",
        )
    if index >= len(faces):
        raise InvalidParams(f"{path}: asked for face {index}, but the image has {len(faces)}")
    return image, faces[index]


def _selection(setup: SwapSetup) -> Selection:
    """The selection asked for; reference images make it a reference selection."""
    selection = parse_selection(setup.options.faces)
    if selection.kind == "reference" or setup.references:
        if len(setup.references) != len(setup.sources):
            raise InvalidParams(
                f"{len(setup.references)} reference image(s) for {len(setup.sources)} source(s)",
                hint="Give one --reference per --source: the face it should replace.",
            )
        return Selection("reference")
    return selection


class FaceSwapProcessor:
    name = "face_swap"
    options_model = SwapSetup

    def models(self, setup: SwapSetup) -> tuple[str, ...]:
        options = setup.options
        needed = ["mediapipe-face-detection", "mediapipe-face-mesh"]
        if options.engine == "inswapper":
            needed += ["inswapper-128", "arcface-w600k-r50"]
        if options.occlusion:
            needed += ["mediapipe-selfie-segmentation", "mediapipe-hands"]
        if options.enhance:
            needed.append(ENHANCERS[0])
        return tuple(needed)

    def prepare(self, setup: SwapSetup) -> SwapState:
        """Analyse sources (and reference faces) before touching any target."""
        selection = _selection(setup)
        options = setup.options
        # A bad source or a missing --enhance model must not leave MediaPipe graphs running
        # in a long-lived worker: what was built is closed unless the state takes it.
        with ExitStack() as built:
            # Live frames come from a webcam: faces are large, and the 2x2 tile pass for
            # small faces in group shots would cost a frame's budget.
            analyzer = built.enter_context(closing(MediaPipeFaceAnalyzer(tiles=not setup.live)))
            engine = load_engine(options)
            prepared = [
                engine.prepare(*_first_face(analyzer, p, options.source_face, "source"))
                for p in setup.sources
            ]
            embedder = MeshShapeEmbedder()
            refs = [
                embedder.embed(*_first_face(analyzer, p, 0, "reference")) for p in setup.references
            ]
            choices = TrackChoices(selection, len(prepared), embedder.embed, refs)
            enhancer = FaceEnhancer.from_store() if options.enhance else None
            segmenter: PersonSegmenter | None = None
            hands: HandTracker | None = None
            if options.occlusion:
                segmenter = built.enter_context(closing(PersonSegmenter()))
                hands = built.enter_context(closing(HandTracker(static=not setup.live)))
            built.pop_all()
        return SwapState(
            options=options,
            engine=engine,
            sources=prepared,
            analyzer=analyzer,
            tracker=FaceTracker(analyzer, options.tracking),
            choices=choices,
            enhancer=enhancer,
            segmenter=segmenter,
            hands=hands,
        )

    def process(self, frame: Frame, state: SwapState, t: float | None = None) -> Frame:
        """Swap the selected faces of one frame of a sequence (tracks carry over)."""
        return self.render(self.analyze(frame, state, t), state)

    def analyze(self, frame: Frame, state: SwapState, t: float | None = None) -> SwapPlan:
        """The first half of `process`: track the faces, pick each one's source and find
        what covers them. A video runs it in its decode thread, a frame or more ahead of
        `render` (MediaPipe's graphs run there while the last frame is drawn); calls must
        come in frame order, and only one at a time."""
        faces = state.tracker.update(frame, t)
        return self._plan(frame, state, state.choices.pairs(frame, faces, state.tracker.ids))

    def render(self, plan: SwapPlan, state: SwapState) -> Frame:
        """The second half of `process`: draw the planned swaps (in plan order)."""
        state.stats.frames += 1
        if not plan.pairs:
            state.stats.frames_without_faces += 1
            return plan.frame
        out = plan.frame.copy()
        paste = state.options.paste()
        for face, src in plan.pairs:
            drawn = swap_face(state.engine, out, face, state.sources[src], paste, plan.keep_out)
            if drawn is not None:
                state.stats.faces_swapped += 1
                if state.enhancer is not None:  # restored inside the outline as drawn
                    state.enhancer.enhance(out, drawn, paste)
        return out

    def process_still(self, image: Frame, state: SwapState) -> Frame:
        """Swap a single image: every face analysed from scratch, no tracking."""
        faces = state.analyzer.analyze(image)
        for i, face in enumerate(faces):
            face.track_id = i
        state.choices.reset()  # a new image: no face is one seen before
        pairs = state.choices.pairs(image, faces, range(len(faces)))
        return self.render(self._plan(image, state, pairs), state)

    def close(self, state: SwapState) -> None:
        state.close()

    def _plan(self, frame: Frame, state: SwapState, pairs: list[tuple[Face, int]]) -> SwapPlan:
        """The faces to swap, with where occluders cover them (when asked and any face is)."""
        keep_out = self._occluders(frame, state) if pairs and state.options.occlusion else None
        return SwapPlan(frame, pairs, keep_out)

    @staticmethod
    def _occluders(frame: Frame, state: SwapState) -> NDArray[np.float32]:
        """1 where something other than the face itself covers it: hands, or anything the
        person segmentation calls background (a cup, a microphone)."""
        assert state.segmenter is not None and state.hands is not None
        person = state.segmenter(frame)
        keep_out = 1.0 - np.clip((person - 0.3) / 0.4, 0.0, 1.0)
        hands = state.hands(frame)
        if hands:
            shape = (frame.shape[0], frame.shape[1])
            keep_out = np.maximum(keep_out, hand_mask(shape, hands) / 255.0)
        return keep_out.astype(np.float32)
