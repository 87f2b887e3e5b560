"""Face swap on real faces: every mode, mask and bad input of `vfx swap`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

from tests.conftest import encode_test_video
from vfxmocap.core.errors import InputError, InvalidParams, ModelMissing
from vfxmocap.core.progress import CancelToken
from vfxmocap.media.image import read_image, write_image
from vfxmocap.media.video import VideoReader, probe
from vfxmocap.processors.face_swap.blend import blend
from vfxmocap.processors.face_swap.engines import (
    GeometricEngine,
    complete_edges,
    prepare_source,
    target_roi,
)
from vfxmocap.processors.face_swap.frontal import _mirror_weight, frontal_view
from vfxmocap.processors.face_swap.processor import FaceSwapProcessor, SwapOptions, SwapSetup
from vfxmocap.processors.face_swap.warp import warp_face
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import Face, MediaPipeFaceAnalyzer
from vfxmocap.vision.landmarks import CHIN, FACE_OVAL, MIRROR, NOSE_TIP, head_pose
from vfxmocap.workflows import get_workflow

SWAP = get_workflow("swap")


@pytest.fixture(scope="module")
def analyzer():
    a = MediaPipeFaceAnalyzer()
    yield a
    a.close()


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return read_image(sample_path("t1"))


def swap_still(image: np.ndarray, sources: list[str], **options) -> tuple[np.ndarray, dict]:
    processor = FaceSwapProcessor()
    references = options.pop("references", [])
    setup = SwapSetup(sources=sources, references=references, options=options, live=False)
    state = processor.prepare(setup)
    try:
        return processor.process_still(image, state), state.stats.as_dict()
    finally:
        state.close()


def changed(a: np.ndarray, b: np.ndarray, face: Face) -> float:
    """Mean absolute change inside a face's box."""
    x0, y0, x1, y1 = face.box.astype(int)
    return float(np.abs(a[y0:y1, x0:x1].astype(int) - b[y0:y1, x0:x1].astype(int)).mean())


def likeness(image: np.ndarray, face: Face, source: np.ndarray, source_face: Face) -> float:
    """How much the face in `image` looks like the source: warp it back onto the source's
    mesh and correlate the high-pass detail (edges of eyes, brows, nose, lips)."""
    roi = target_roi(source_face, source.shape)
    assert roi is not None
    x0, y0, x1, y1 = roi
    back, cover = warp_face(image, face.landmarks[:, :2], source_face.landmarks, roi)
    source = source[y0:y1, x0:x1]
    inner = cv2.erode(cover, np.ones((9, 9), np.uint8)) > 0

    def detail(img: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return gray - cv2.GaussianBlur(gray, (0, 0), 3)

    a, b = detail(back)[inner], detail(source)[inner]
    return float(np.corrcoef(a, b)[0, 1])


def test_identity_moves_to_the_source(analyzer, t1, astronaut: Path) -> None:
    source = read_image(astronaut)
    source_face = analyzer.analyze(source)[0]
    out, stats = swap_still(t1, [str(astronaut)])
    assert stats == {"frames": 1, "faces_swapped": 6, "frames_without_faces": 0}
    gains = []
    for before in analyzer.analyze(t1):
        after = min(analyzer.analyze(out), key=lambda f: np.abs(f.center - before.center).sum())
        gain = likeness(out, after, source, source_face) - likeness(t1, before, source, source_face)
        # the back-warp proxy is only sharp for faces that are not turned far away
        gains.append(gain)
        assert gain > (0.2 if abs(before.pose.yaw) < 20 else -0.1), (before.pose, gain)
    assert sum(g > 0.2 for g in gains) >= 3


def test_pixels_away_from_faces_are_untouched(analyzer, t1, astronaut: Path) -> None:
    out, _ = swap_still(t1, [str(astronaut)])
    keep = np.ones(t1.shape[:2], bool)
    for face in analyzer.analyze(t1):
        x0, y0, x1, y1 = target_roi(face, t1.shape)
        keep[y0:y1, x0:x1] = False
    assert keep.mean() > 0.8
    assert np.array_equal(out[keep], t1[keep])


def test_largest_only(analyzer, t1, astronaut: Path) -> None:
    faces = analyzer.analyze(t1)
    out, stats = swap_still(t1, [str(astronaut)], faces="largest")
    assert stats["faces_swapped"] == 1
    assert changed(out, t1, faces[0]) > 5
    assert all(changed(out, t1, f) < 0.5 for f in faces[1:])


def test_chosen_indices(analyzer, t1, astronaut: Path) -> None:
    faces = analyzer.analyze(t1)
    out, stats = swap_still(t1, [str(astronaut)], faces="1,3")
    assert stats["faces_swapped"] == 2
    assert [changed(out, t1, f) > 5 for f in faces] == [False, True, False, True, False, False]


def test_two_sources_mapped_to_chosen_faces(analyzer, t1, astronaut: Path) -> None:
    """Source 0 onto face 1 and source 1 onto face 0 (both near-frontal), the rest untouched."""
    hanks = str(sample_path("tom_hanks"))
    faces = analyzer.analyze(t1)
    out, stats = swap_still(t1, [str(astronaut), hanks], faces="map:0=1,1=0")
    assert stats["faces_swapped"] == 2
    assert all(changed(out, t1, f) < 0.5 for f in faces[2:])
    src = [read_image(astronaut), hanks_in_frame()]
    src_faces = [analyzer.analyze(s)[0] for s in src]

    def gain(i: int, s: int) -> float:
        after = min(analyzer.analyze(out), key=lambda f: np.abs(f.center - faces[i].center).sum())
        return likeness(out, after, src[s], src_faces[s]) - likeness(
            t1, faces[i], src[s], src_faces[s]
        )

    assert gain(1, 0) > 0.15 and gain(1, 0) > gain(1, 1)
    assert gain(0, 1) > gain(0, 0)


def test_a_mapping_to_a_missing_source_fails_before_any_target(t1, astronaut: Path) -> None:
    with pytest.raises(InvalidParams, match="names source 1, but 1 given"):
        swap_still(t1, [str(astronaut)], faces="map:1=0")


@pytest.mark.parametrize(
    "spec", ["99999999999999999999999", "0,256", "map:300=0", "map:0=id:99999999999"]
)
def test_face_indices_past_any_real_face_are_invalid(t1, astronaut: Path, spec: str) -> None:
    """Not a swap that quietly finds "no face": the spec itself is out of range."""
    with pytest.raises(InvalidParams, match="out of range") as info:
        swap_still(t1, [str(astronaut)], faces=spec)
    assert info.value.exit_code == 2


def test_source_face_picked_from_a_group(analyzer, t1, tmp_path: Path, astronaut: Path) -> None:
    group = tmp_path / "group.png"
    write_image(group, t1)
    target = read_image(astronaut)
    out, stats = swap_still(target, [str(group)], source_face=1)
    assert stats["faces_swapped"] == 1
    group_faces = analyzer.analyze(t1)
    after, before = analyzer.analyze(out)[0], analyzer.analyze(target)[0]

    def gain(k: int) -> float:
        return likeness(out, after, t1, group_faces[k]) - likeness(
            target, before, t1, group_faces[k]
        )

    assert gain(1) > 0.1 and gain(1) > gain(0) + 0.05  # face 1 came over, not face 0
    with pytest.raises(InvalidParams, match="has 6"):
        swap_still(target, [str(group)], source_face=9)


def test_reference_image_picks_the_face(analyzer, t1, tmp_path: Path, astronaut: Path) -> None:
    """A reference photo of one person (cropped from the group) replaces only that person."""
    faces = analyzer.analyze(t1)
    x0, y0, x1, y1 = faces[3].box.astype(int)
    ref = tmp_path / "ref.png"
    pad = 60
    write_image(ref, t1[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad])
    out, stats = swap_still(t1, [str(astronaut)], references=[str(ref)], faces="reference")
    assert stats["faces_swapped"] >= 1
    assert changed(out, t1, faces[3]) > 5


def hanks_in_frame() -> np.ndarray:
    """The aligned 112 px crop, given room around the face (detectors need some) and enlarged."""
    crop = read_image(sample_path("tom_hanks"))
    padded = cv2.copyMakeBorder(crop, 56, 56, 56, 56, cv2.BORDER_REFLECT)
    return cv2.resize(padded, (448, 448), interpolation=cv2.INTER_CUBIC)


def test_a_source_cut_by_its_edge_is_filled_in(analyzer, astronaut: Path) -> None:
    """Tom Hanks's aligned crop cuts his chin: the geometric engine's source runs on past the
    crop's edge towards where the face is drawn, filled with the skin's shading (not black, the
    photo itself untouched); a photo with room around the face is left as it is."""
    crop = read_image(sample_path("tom_hanks"))
    face = analyzer.analyze_photo(crop)[0]
    assert face.landmarks[CHIN, 1] > crop.shape[0] - 1  # the chin is past the bottom edge
    plain = prepare_source(crop, face)
    filled = complete_edges(plain)
    h, w = plain.image.shape[:2]
    dx, dy = np.round(filled.face.landmarks[0, :2] - plain.face.landmarks[0, :2]).astype(int)
    assert filled.image.shape[0] > h
    assert np.array_equal(filled.image[dy : dy + h, dx : dx + w], plain.image)
    chin = filled.face.landmarks[CHIN, :2]
    assert 0 <= chin[1] < filled.image.shape[0] and 0 <= chin[0] < filled.image.shape[1]
    below = filled.image[dy + h :, dx : dx + w].astype(float).mean()
    last_rows = plain.image[-4:].astype(float).mean()
    assert abs(below - last_rows) < 25, (below, last_rows)
    roomy = read_image(astronaut)
    face = analyzer.analyze_photo(roomy)[0]
    assert (
        complete_edges(prepare_source(roomy, face)).image.shape
        == prepare_source(roomy, face).image.shape
    )


def test_the_mirror_index_pairs_the_mesh_of_a_flipped_face(
    analyzer, astronaut: Path, carphone_frames
) -> None:
    """MIRROR: the mesh found on a flipped photo, flipped back and renumbered by MIRROR, is
    the photo's own mesh (within 1.5% of the face's width, on real faces); it pairs the
    points (28 on the midline are their own) and maps the tessellation onto itself."""
    assert np.array_equal(MIRROR[MIRROR], np.arange(len(MIRROR)))
    assert int((np.arange(len(MIRROR)) == MIRROR).sum()) == 28
    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    kept = sum(tuple(sorted((int(MIRROR[a]), int(MIRROR[b])))) in edges for a, b in edges)
    assert kept >= 0.99 * len(edges)
    for image in (read_image(astronaut), carphone_frames[0], carphone_frames[-1]):
        own = analyzer.analyze(image)[0].landmarks[:, :2]
        seen = analyzer.analyze(np.ascontiguousarray(image[:, ::-1]))[0].landmarks[:, :2].copy()
        seen[:, 0] = image.shape[1] - 1 - seen[:, 0]
        error = float(np.median(np.linalg.norm(seen[MIRROR] - own, axis=1)))
        assert error < 0.015 * float(np.ptp(own[:, 0])), error
        assert float(np.median(np.linalg.norm(seen - own, axis=1))) > 5 * error  # unpaired


def test_a_turned_source_is_drawn_frontal_its_far_cheek_from_its_mirror_image(
    analyzer, astronaut: Path
) -> None:
    """Tom Hanks's photo is turned 18°: the geometric engine's source is a frontal view of
    him (MediaPipe finds it turned far less, where its landmarks say), drawn from the
    mirror image where the photo foreshortens his far cheek, and from the photo on the near
    side. The astronaut, turned 2°, is used as she is."""
    crop = read_image(sample_path("tom_hanks"))
    face = analyzer.analyze_photo(crop)[0]
    yaw = head_pose(face.landmarks).yaw
    assert yaw > 15
    source = GeometricEngine().prepare(crop, face)
    found = analyzer.analyze_photo(source.image)[0]
    # MediaPipe still reads some turn in the shading, which the warp does not move (8.5°)
    assert abs(head_pose(found.landmarks).yaw) < 0.6 * yaw
    assert abs(head_pose(source.face.landmarks).yaw) < 1
    width = float(np.ptp(source.face.landmarks[:, 0]))
    error = np.linalg.norm(found.landmarks[:, :2] - source.face.landmarks[:, :2], axis=1)
    assert float(np.median(error)) < 0.03 * width
    # the far cheek (turned to the image's right, yaw > 0) is the mirror's, the near one not
    weight = _mirror_weight(face.landmarks)
    oval = np.array(FACE_OVAL)
    far = oval[face.landmarks[oval, 0] > face.landmarks[NOSE_TIP, 0] + 0.2 * face.width]
    near = oval[face.landmarks[oval, 0] < face.landmarks[NOSE_TIP, 0] - 0.2 * face.width]
    assert weight[far].mean() > 0.6 and weight[near].max() == 0.0
    roomy = read_image(astronaut)
    assert frontal_view(roomy, analyzer.analyze_photo(roomy)[0].landmarks) is None


def test_the_multiband_blend_fades_out_past_the_mask_without_a_step() -> None:
    """A face much brighter than the frame (a lit forehead under dark hair), feathered in over
    60 rows: the blend's coarse levels fade out a little past the mask's last pixel, and that
    fade is kept, so the edge of the mask shows no step (resetting every pixel at weight 0
    to the frame cut a 10-level line along it). A mouth opening passed as `exact` is the
    frame's to the pixel."""
    frame = read_image(sample_path("camera")) // 2
    patch = cv2.add(frame, 100)
    t = np.clip((np.arange(frame.shape[0]) - 200) / 60, 0, 1).astype(np.float32)
    alpha = np.repeat((t * t * (3 - 2 * t))[:, None], frame.shape[1], axis=1)
    hole = np.zeros(frame.shape[:2], np.uint8)
    hole[330:360, 200:300] = 255
    alpha[hole > 0] = 0
    out = blend(patch, frame, alpha, "multiband", hole)
    lift = (out.astype(float) - frame)[:, 100:400].mean(axis=(1, 2))
    steps = np.abs(np.diff(lift[150:300]))
    steepest = 100 * 1.5 / 60  # of the feather itself (smoothstep over 60 rows): 2.5 a row
    assert steps.max() <= steepest + 0.5, (steps.max(), steps.argmax() + 150)  # was 6 at 200
    assert lift[195] > 0.5  # the fade goes on past the mask
    assert np.array_equal(out[hole > 0], frame[hole > 0])


def test_mask_kinds(analyzer, astronaut: Path) -> None:
    target = hanks_in_frame()
    area = {}
    for kind in ("oval", "hull"):
        out, _ = swap_still(target, [str(astronaut)], mask={"kind": kind, "blur": 0.0})
        area[kind] = int((np.abs(out.astype(int) - target).sum(axis=2) > 0).sum())
    out, _ = swap_still(
        target, [str(astronaut)], mask={"kind": "regions", "regions": ["eyes"], "blur": 0.0}
    )
    area["eyes"] = int((np.abs(out.astype(int) - target).sum(axis=2) > 0).sum())
    assert area["eyes"] < 0.25 * area["oval"] < area["oval"] < area["hull"]


def test_mouth_mask_keeps_an_open_mouth(analyzer, carphone_frames, astronaut: Path) -> None:
    frame = cv2.resize(carphone_frames[28], (528, 432), interpolation=cv2.INTER_CUBIC)
    from vfxmocap.vision.landmarks import LIPS_INNER, mouth_openness

    face = analyzer.analyze(frame)[0]
    assert mouth_openness(face.landmarks) > 0.15
    inner = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inner, [face.landmarks[LIPS_INNER, :2].astype(np.int32)], 255)
    inner = cv2.erode(inner, np.ones((3, 3), np.uint8)) > 0
    # shape 0: the face keeps the target's geometry, so its mouth opening stays where it was
    plain, _ = swap_still(frame, [str(astronaut)], mask={"mouth_mask": False}, shape=0.0)
    kept, _ = swap_still(frame, [str(astronaut)], shape=0.0)  # on by default
    diff = lambda img: float(np.abs(img[inner].astype(int) - frame[inner]).mean())  # noqa: E731
    assert diff(kept) < 3 < diff(plain)


def test_occlusion_keeps_an_object_in_front_of_the_face(
    analyzer, carphone_frames, astronaut: Path
) -> None:
    """A real coffee cup pasted over the lower face stays a cup with --occlusion."""
    frame = cv2.resize(carphone_frames[0], (704, 576), interpolation=cv2.INTER_CUBIC)
    face = analyzer.analyze(frame)[0]
    cup = read_image(sample_path("coffee"))[60:330, 130:470]
    cup = cv2.resize(cup, (int(face.width * 0.9), int(face.width * 0.7)))
    x = int(face.center[0] - cup.shape[1] / 2)
    y = int(face.box[3] - cup.shape[0] * 0.55)
    frame[y : y + cup.shape[0], x : x + cup.shape[1]] = cup
    region = (slice(y + 5, y + cup.shape[0] - 5), slice(x + 5, x + cup.shape[1] - 5))
    plain, _ = swap_still(frame, [str(astronaut)])
    kept, _ = swap_still(frame, [str(astronaut)], occlusion=True)
    diff = lambda img: float(np.abs(img[region].astype(int) - frame[region]).mean())  # noqa: E731
    assert diff(kept) < 0.5 * diff(plain)


def test_opacity_zero_changes_nothing(t1, astronaut: Path) -> None:
    out, stats = swap_still(t1, [str(astronaut)], opacity=0.0)
    assert stats["faces_swapped"] == 6 and np.array_equal(out, t1)


@pytest.mark.parametrize("blend", ["multiband", "poisson", "feather"])
def test_every_blend_mode_swaps(analyzer, astronaut: Path, blend: str) -> None:
    target = hanks_in_frame()
    out, _ = swap_still(target, [str(astronaut)], blend=blend)
    assert changed(out, target, analyzer.analyze(target)[0]) > 3


# --- workflow: files in, files out ----------------------------------------------------------


def test_video_swap_keeps_audio_size_and_rate(
    tmp_path: Path, video_with_audio: Path, astronaut: Path
) -> None:
    out = tmp_path / "swapped.mp4"
    result = SWAP({"sources": [str(astronaut)], "target": str(video_with_audio), "output": out})
    info, src = probe(out), probe(video_with_audio)
    assert (info.width, info.height, info.frame_count) == (src.width, src.height, src.frame_count)
    assert info.frame_rate == src.frame_rate and info.has_audio
    assert result.summary["faces_swapped"] == src.frame_count
    assert result.summary["frames_without_faces"] == 0


@pytest.mark.parametrize("pattern", ["frame_*.png", "frame_%04d.png", ""])
def test_a_png_sequence_target_writes_a_video(
    tmp_path: Path, carphone_frames, astronaut: Path, pattern: str
) -> None:
    """A glob, a %04d pattern or a folder of .png files is a sequence, not an image."""
    folder = tmp_path / "seq"
    for i, frame in enumerate(carphone_frames[:6]):
        write_image(folder / f"frame_{i:04d}.png", frame)
    out = tmp_path / "out.mp4"
    result = SWAP({"sources": [str(astronaut)], "target": str(folder / pattern), "output": out})
    assert probe(out).frame_count == 6 and result.summary["faces_swapped"] == 6


def test_frames_without_faces_pass_through_and_are_counted(
    tmp_path: Path, carphone_frames, astronaut: Path
) -> None:
    empty = cv2.resize(read_image(sample_path("coffee")), (176, 144))
    frames = carphone_frames[:10] + [empty] * 5 + carphone_frames[10:20]
    video = encode_test_video(tmp_path / "mixed.mp4", frames)
    result = SWAP(
        {"sources": [str(astronaut)], "target": str(video), "output": tmp_path / "out.mp4"}
    )
    assert result.summary["frames"] == 25 and result.summary["frames_without_faces"] == 5
    decoded = list(VideoReader(tmp_path / "out.mp4"))
    original = list(VideoReader(video))
    for i in range(10, 15):  # passed through: only re-encoding noise
        assert np.abs(decoded[i].astype(int) - original[i]).mean() < 2


def test_target_without_faces_equals_input(tmp_path: Path, astronaut: Path) -> None:
    coffee = read_image(sample_path("coffee"))
    result = SWAP(
        {
            "sources": [str(astronaut)],
            "target": str(sample_path("coffee")),
            "output": tmp_path / "out.png",
        }
    )
    assert np.array_equal(read_image(tmp_path / "out.png"), coffee)
    assert result.summary["faces_swapped"] == 0 and "no face" in result.summary["warning"]


def test_no_face_in_source_fails_before_any_work(tmp_path: Path, carphone: Path) -> None:
    with pytest.raises(InputError, match="no face found in the source"):
        SWAP(
            {
                "sources": [str(sample_path("coffee"))],
                "target": str(carphone),
                "output": tmp_path / "out.mp4",
            }
        )
    assert list(tmp_path.iterdir()) == []


def test_unreadable_source(tmp_path: Path, carphone: Path) -> None:
    bad = tmp_path / "face.jpg"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        SWAP({"sources": [str(bad)], "target": str(carphone), "output": tmp_path / "o.mp4"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg"]


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_unusual_image_formats(tmp_path: Path, astronaut: Path, kind: str) -> None:
    rgb = read_image(astronaut)
    path = tmp_path / f"src_{kind}.png"
    if kind == "gray":
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    elif kind == "rgba":
        write_image(path, np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    else:
        cv2.imwrite(str(path), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    result = SWAP({"sources": [str(path)], "target": str(path), "output": tmp_path / "o.png"})
    assert result.summary["faces_swapped"] == 1
    assert read_image(tmp_path / "o.png").shape == (512, 512, 3)


def test_rotated_odd_sized_video(tmp_path: Path, carphone_frames, astronaut: Path) -> None:
    """A phone video: stored sideways with a display rotation, and an odd frame size."""
    upright = [
        cv2.resize(f, (351, 287), interpolation=cv2.INTER_CUBIC) for f in carphone_frames[:12]
    ]
    stored = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in upright]  # 287 wide, 351 high
    video = encode_test_video(tmp_path / "phone.mp4", stored, rotation=90, pix_fmt="yuv444p")
    assert (probe(video).width, probe(video).height) == (351, 287)
    out = tmp_path / "out.mp4"
    result = SWAP({"sources": [str(astronaut)], "target": str(video), "output": out})
    info = probe(out)
    assert (info.width, info.height) == (352, 288)  # upright; odd sizes padded by one pixel
    assert result.summary["faces_swapped"] == 12


def test_cancel_leaves_no_output(tmp_path: Path, carphone: Path, astronaut: Path) -> None:
    from vfxmocap.core.errors import Cancelled
    from vfxmocap.core.progress import Progress

    token = CancelToken()

    def on_progress(event) -> None:
        if event.stage == "frames" and event.value >= 10:
            token.cancel()

    with pytest.raises(Cancelled):
        SWAP(
            {"sources": [str(astronaut)], "target": str(carphone), "output": tmp_path / "o.mp4"},
            Progress(on_progress, min_interval_s=0),
            token,
        )
    assert list(tmp_path.iterdir()) == []


def test_output_suffix_must_fit_the_target(tmp_path: Path, carphone: Path, astronaut) -> None:
    with pytest.raises(InvalidParams, match="mp4"):
        SWAP({"sources": [str(astronaut)], "target": str(carphone), "output": tmp_path / "o.png"})
    with pytest.raises(InvalidParams, match="image output"):
        SWAP({"sources": [str(astronaut)], "target": str(astronaut), "output": tmp_path / "o.mp4"})


def test_shape_transfer_takes_the_source_outline_and_keeps_the_expression(
    analyzer, carphone_frames, astronaut: Path
) -> None:
    from vfxmocap.processors.face_swap.shape import transfer_shape
    from vfxmocap.vision.landmarks import mouth_openness

    target = analyzer.analyze(cv2.resize(carphone_frames[28], (528, 432)))[0].landmarks
    source = analyzer.analyze(read_image(astronaut))[0].landmarks
    half, full = transfer_shape(target, source, 0.5), transfer_shape(target, source, 1.0)
    assert np.array_equal(transfer_shape(target, source, 0.0), target)
    # the source's proportions (face width and length, jaw, eye gap) are approached half-way,
    # then reached
    t, h, f, s = (proportions(lm) for lm in (target, half, full, source))
    assert np.allclose(h, (t + f) / 2, atol=0.01)
    assert np.abs(f - s).max() < 0.5 * np.abs(t - s).max()
    # the target's open mouth stays open
    assert mouth_openness(full) == pytest.approx(mouth_openness(target), rel=0.05)


# --- quality on real frames: identity, seams, expression, detail -----------------------------

QUALITY_FRAMES = (10, 30, 45, 60, 96, 100)  # 96 has a closed mouth, 30 an open one, 60 a wide one


@pytest.fixture(scope="module")
def carphone_large(carphone: Path) -> dict[int, np.ndarray]:
    """carphone frames scaled 4x (704x576): a face about as large as in a 720p close-up."""
    with VideoReader(carphone) as reader:
        frames = list(reader)
    return {
        i: cv2.resize(frames[i], (704, 576), interpolation=cv2.INTER_CUBIC) for i in QUALITY_FRAMES
    }


def proportions(landmarks: np.ndarray) -> np.ndarray:
    """What a face's outline is, expression aside: face width at cheeks and jaw, forehead to
    nose tip and the inner eye gap, over the eye-corner distance, in 3D (head pose aside)."""
    lm = landmarks[:, :3].astype(np.float64)
    eyes = np.linalg.norm(lm[263] - lm[33])
    pairs = [(234, 454), (172, 397), (10, 4), (133, 362)]
    return np.array([np.linalg.norm(lm[a] - lm[b]) / eyes for a, b in pairs])


@pytest.mark.parametrize(("name", "reach"), [("astronaut", 0.8), ("tom_hanks", 0.8)])
def test_the_shape_slider_moves_the_face_towards_the_source(
    analyzer, carphone_large, name: str, reach: float
) -> None:
    """Measured on the output images (landmarks found afresh), averaged over three frames
    (a landmark fit on one frame, softened to the frame's detail, wobbles by about the
    step between 0 and 0.5): 1.0 is nearer than 0.5, which is nearer than 0 (the target's
    own shape). Tom Hanks is a 112 px aligned crop, turned a little: measured with room
    around it, as the detector needs; his proportions, fitted on so few pixels, are known
    less well (his crop cuts the chin, and since the cut is filled in, shape 0 itself
    measures nearer him: 0.043 -> 0.040). At 1.0 the astronaut's output is 0.73 of the
    distance at 0 away: 0.59 while the blend cut its fade off at the mask's edge, a line
    around the face that MediaPipe fitted its outline to."""
    path = sample_path(name)
    view = hanks_in_frame() if name == "tom_hanks" else read_image(path)
    source = proportions(analyzer.analyze(view)[0].landmarks)

    def distance(shape: float) -> float:
        found = []
        for index in (10, 30, 96):
            out, _ = swap_still(carphone_large[index], [str(path)], shape=shape)
            found.append(np.abs(proportions(analyzer.analyze(out)[0].landmarks) - source).mean())
        return float(np.mean(found))

    d0, d5, d1 = distance(0.0), distance(0.5), distance(1.0)
    assert d1 < d5 < d0, (d0, d5, d1)
    assert d1 < reach * d0, (d0, d5, d1)


def _skin_edges() -> np.ndarray:
    """Edges of the mesh inside the face that lie on skin: not on its outline, eyes, brows
    or lips, whose contours are real lines in any face."""
    from mediapipe.python.solutions import face_mesh_connections as mesh

    from vfxmocap.vision import landmarks as lmk

    features = set(lmk.FACE_OVAL + lmk.LEFT_EYE + lmk.RIGHT_EYE + lmk.LEFT_BROW)
    features |= set(lmk.RIGHT_BROW + lmk.LIPS)
    edges = {tuple(sorted(e)) for e in mesh.FACEMESH_TESSELATION if not set(e) & features}
    return np.array(sorted(edges))


def line_energy(image: np.ndarray, landmarks: np.ndarray, shift: float = 0.0) -> float:
    """How much thin lines run along the mesh's skin edges (moved `shift` px sideways): the
    Laplacian of Gaussian on each edge minus its mean 2 px either side, averaged along the
    edge (a seam adds up along it, texture cancels), in absolute value, over all edges."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1)
    log = cv2.Laplacian(gray, cv2.CV_32F)
    edges = _skin_edges()
    a, b = landmarks[edges[:, 0], :2], landmarks[edges[:, 1], :2]
    d = b - a
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.linalg.norm(d, axis=1, keepdims=True)
    points = a[:, None] + np.linspace(0.2, 0.8, 7)[None, :, None] * d[:, None]
    points += shift * normal[:, None]

    def along(offset: float) -> np.ndarray:
        p = (points + offset * normal[:, None]).reshape(-1, 1, 2).astype(np.float32)
        values = cv2.remap(log, p[..., 0], p[..., 1], cv2.INTER_LINEAR)
        return values.reshape(len(edges), -1).mean(axis=1)

    return float(np.abs(along(0) - (along(2) + along(-2)) / 2).mean())


def seam_score(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Line energy on the mesh's skin edges over that on lines 4 px beside them: about 1
    where nothing follows the mesh, higher where the warp drew its triangles' edges."""
    beside = (line_energy(image, landmarks, 4) + line_energy(image, landmarks, -4)) / 2
    return line_energy(image, landmarks) / beside


def test_no_seams_along_the_mesh(analyzer, carphone_large, astronaut: Path) -> None:
    """On real frames, the swapped face has no more line energy along its triangles' edges
    than the frame had along the original face's or the source had along its own face."""
    from vfxmocap.processors.face_swap.masks import face_size
    from vfxmocap.processors.face_swap.shape import transfer_shape

    source = read_image(astronaut)
    source_face = analyzer.analyze(source)[0]
    shape = SwapOptions().shape
    excess = []
    for frame in carphone_large.values():
        target = analyzer.analyze(frame)[0]
        out, _ = swap_still(frame, [str(astronaut)])
        drawn = transfer_shape(target.landmarks, source_face.landmarks, shape)
        # the source's own score at the size its face is drawn (the Laplacian's scale matters)
        k = face_size(drawn) / face_size(source_face.landmarks)
        resized = cv2.resize(source, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        reference = max(
            seam_score(frame, target.landmarks), seam_score(resized, source_face.landmarks * k)
        )
        excess.append(seam_score(out, drawn) - reference)
    assert np.mean(excess) < 0.02, excess


def eye_openness(landmarks: np.ndarray) -> float:
    """Lid gap over eye width, both eyes averaged."""
    lm = landmarks[:, :2].astype(np.float64)
    gaps = [(159, 145, 33, 133), (386, 374, 263, 362)]
    return float(
        np.mean(
            [np.linalg.norm(lm[a] - lm[b]) / np.linalg.norm(lm[c] - lm[d]) for a, b, c, d in gaps]
        )
    )


def smile(landmarks: np.ndarray) -> float:
    """How far the mouth corners sit above the lips' middle, over the mouth's width."""
    lm = landmarks[:, :2].astype(np.float64)
    up = lm[10] - lm[152]
    up /= np.linalg.norm(up)
    corners = (lm[61] + lm[291]) / 2
    middle = (lm[13] + lm[14]) / 2
    return float((corners - middle) @ up / np.linalg.norm(lm[291] - lm[61]))


@pytest.mark.parametrize(
    ("name", "index"), [("astronaut", 96), ("astronaut", 30), ("tom_hanks", 60)]
)
def test_the_target_keeps_its_expression(analyzer, carphone_large, name: str, index: int) -> None:
    """The astronaut smiles with her teeth showing, Tom Hanks with his lips closed; on a
    closed target mouth (frame 96), an open one (30) and a wide one (60) the output's mouth
    opening, smile and eye opening stay the target's, measured on landmarks found afresh on
    the output (a closed source's lips once folded over the opening: 0.37 for 0.83)."""
    from vfxmocap.vision.landmarks import mouth_openness

    path = sample_path(name)
    view = hanks_in_frame() if name == "tom_hanks" else read_image(path)
    source = analyzer.analyze(view)[0].landmarks
    if name == "astronaut":
        assert mouth_openness(source) > 0.15 and smile(source) > 0.1  # a real, toothy smile
    else:
        assert mouth_openness(source) < 0.05  # closed: its lips must not close the target's
    frame = carphone_large[index]
    target = analyzer.analyze(frame)[0].landmarks
    out, _ = swap_still(frame, [str(path)])
    after = analyzer.analyze(out)[0].landmarks
    # closed stays closed (the smile's teeth do not open it), open keeps most of its opening
    opening = mouth_openness(target)
    assert abs(mouth_openness(after) - opening) < 0.03 + 0.25 * opening, (
        mouth_openness(after),
        opening,
    )
    assert abs(smile(after) - smile(target)) < 0.05
    assert eye_openness(after) == pytest.approx(eye_openness(target), abs=0.05)


def test_the_source_detail_survives_the_swap(analyzer, astronaut: Path) -> None:
    """A face swapped onto itself comes back as sharp as it was: no resampling blur, no
    colour transfer that flattens its shading."""
    image = read_image(astronaut)
    face = analyzer.analyze(image)[0]
    out, _ = swap_still(image, [str(astronaut)], shape=1.0)
    x0, y0, x1, y1 = face.box.astype(int)

    def detail(img: np.ndarray) -> float:
        gray = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 2)).mean())

    assert detail(out) > 0.9 * detail(image), (detail(out), detail(image))
    assert np.abs(out[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1]).mean() < 6


# --- video: a choice made for a face stays with that person ---------------------------------

SHRINK = 0.6  # the whole frame, scaled down to keep the test quick


def _half_scaled(image: np.ndarray, scale: float) -> np.ndarray:
    """The affine map that scales t1 about the middle of its width (and half its height)."""
    h, w = image.shape[:2]
    return SHRINK * np.array(
        [[scale, 0, w / 2 * (1 - scale)], [0, scale, h / 2 * (1 - scale)]], np.float32
    )


def crossing_sizes(t1: np.ndarray, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """t1's left half shrinking while its right half grows, so the largest faces of the
    first frame (middle-left) end smaller than those on the right: (frame, left, right maps)."""
    h, w = t1.shape[:2]
    size = (int(w * SHRINK), int(h * SHRINK))
    left, right = t1.copy(), t1.copy()
    left[:, w // 2 :] = 0
    right[:, : w // 2] = 0
    out = []
    for i in range(count):
        k = i / (count - 1)
        to_left, to_right = _half_scaled(t1, 1.0 - 0.4 * k), _half_scaled(t1, 0.6 + 0.4 * k)
        frame = cv2.warpAffine(left, to_left, size) + cv2.warpAffine(right, to_right, size)
        out.append((frame, to_left, to_right))
    return out


@pytest.mark.parametrize("faces", ["largest", "0,2"])
def test_video_selection_stays_with_the_person_when_sizes_cross(
    analyzer, t1, astronaut: Path, faces: str
) -> None:
    people = [f.box for f in analyzer.analyze(t1)]  # t1 boxes, one per person
    middle = t1.shape[1] / 2
    processor = FaceSwapProcessor()
    setup = SwapSetup(sources=[str(astronaut)], options=SwapOptions(faces=faces), live=False)
    state = processor.prepare(setup)
    swapped, largest = [], []
    try:
        for i, (frame, to_left, to_right) in enumerate(crossing_sizes(t1, 24)):
            out = processor.process(frame, state, i / 24)
            boxes = [
                cv2.transform(box.reshape(1, 2, 2), to_left if box[0] < middle else to_right)
                .reshape(4)
                .astype(int)
                for box in people
            ]
            change = [
                np.abs(out - frame.astype(int))[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in boxes
            ]
            swapped.append({p for p, c in enumerate(change) if c > 2})
            largest.append(
                max(range(len(boxes)), key=lambda p: np.prod(boxes[p][2:] - boxes[p][:2]))
            )
    finally:
        state.close()
    assert largest[0] != largest[-1]  # the sizes did cross
    chosen = swapped[0]
    assert len(chosen) == (1 if faces == "largest" else 2)
    assert all(s <= chosen for s in swapped), swapped  # never anyone else
    assert sum(s == chosen for s in swapped) >= 20, swapped  # the chosen, (nearly) always


def test_a_failing_prepare_closes_every_mediapipe_graph_it_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--enhance` without its model, in a long-lived worker: no graphs left running."""
    from mediapipe.python.solution_base import SolutionBase

    opened: list[SolutionBase] = []
    original = SolutionBase.__init__

    def tracked(self: SolutionBase, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(SolutionBase, "__init__", tracked)
    options = SwapOptions(enhance=True, occlusion=True)
    setup = SwapSetup(sources=[str(sample_path("t1"))], options=options, live=True)
    with pytest.raises(ModelMissing, match="gfpgan"):
        FaceSwapProcessor().prepare(setup)
    assert opened  # the face analyzer was built before the enhancer failed
    assert [g for g in opened if g._graph is not None] == []


def _face_detail(image: np.ndarray, face: Face) -> float:
    """RMS of the Laplacian of the grey face box: the face's fine detail."""
    x0, y0, x1, y1 = face.box.astype(int)
    gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.sqrt(np.mean(cv2.Laplacian(gray, cv2.CV_32F) ** 2)))


def test_the_swapped_face_takes_the_frame_s_sharpness(
    analyzer, carphone_large, astronaut: Path
) -> None:
    """The sharp astronaut on carphone scaled up 4x (a soft frame) is blurred to the frame's
    detail; without sharpness matching it stands out, much sharper than the frame."""
    frame = carphone_large[30]
    face = analyzer.analyze(frame)[0]
    frame_detail = _face_detail(frame, face)
    matched, _ = swap_still(frame, [str(astronaut)])
    plain, _ = swap_still(frame, [str(astronaut)], sharpness_match=False)
    assert _face_detail(plain, face) > 1.6 * frame_detail  # the problem is real here
    assert _face_detail(matched, face) == pytest.approx(frame_detail, rel=0.3)


def test_a_softer_face_is_sharpened_towards_the_frame() -> None:
    """match_sharpness on real pixels: a softened copy of the astronaut, matched to the
    original, gets back towards the original's detail, never past it (an unsharp mask of
    bounded gain: measured, a quarter of the detail a 1 px blur took)."""
    from skimage import data

    from vfxmocap.processors.face_swap.blend import _detail, match_sharpness

    sharp = np.ascontiguousarray(data.astronaut()[60:220, 130:270])
    soft = cv2.GaussianBlur(sharp, (0, 0), 1.0)
    mask = np.full(sharp.shape[:2], 255, np.uint8)

    def detail(img: np.ndarray) -> float:
        return _detail(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), mask)

    restored = match_sharpness(soft, sharp, mask)
    assert detail(soft) < 0.6 * detail(sharp)
    assert detail(soft) + 0.15 * (detail(sharp) - detail(soft)) < detail(restored)
    assert detail(restored) < detail(sharp)
    assert np.array_equal(match_sharpness(sharp, sharp, mask), sharp)  # already matched


def test_a_black_and_white_source_takes_the_target_s_colouring() -> None:
    """Tom Hanks' sample is a grey photo, the astronaut a colour one. A grey face matched to
    a colour one takes its colouring, lips and cheeks included (the chroma, smoothed, follows
    the target's from place to place), not one flat skin tone; its shading stays its own."""
    from skimage import data

    from vfxmocap.processors.face_swap.blend import match_color
    from vfxmocap.processors.face_swap.engines import is_monochrome

    assert is_monochrome(read_image(sample_path("tom_hanks")))
    assert not is_monochrome(read_image(sample_path("astronaut")))
    colour = np.ascontiguousarray(data.astronaut()[40:232, 120:312])  # her face, 192 px
    grey = cv2.cvtColor(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert is_monochrome(grey)
    mask = np.full(colour.shape[:2], 255, np.uint8)

    def chroma(image: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(cv2.GaussianBlur(image, (0, 0), 8), cv2.COLOR_RGB2LAB)
        return lab[..., 1:].reshape(-1, 2).astype(np.float64)

    want = chroma(colour)
    flat, tinted = match_color(grey, colour, mask), match_color(grey, colour, mask, True)
    follows = [np.corrcoef(chroma(img)[:, 0], want[:, 0])[0, 1] for img in (flat, tinted)]
    assert follows[1] > 0.8 > follows[0] + 0.3, follows
    shading = lambda img: cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)  # noqa: E731
    assert np.corrcoef(shading(tinted).ravel(), shading(grey).ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    ("source", "exposure", "end"),
    [("tom_hanks", 1.0, 255), ("astronaut", 0.35, 0)],
    ids=["dark-source-bright-faces", "bright-source-dark-faces"],
)
def test_the_colour_match_keeps_highlights_and_shadows(
    analyzer, t1, source: str, exposure: float, end: int
) -> None:
    """Tom Hanks' photo is darker than t1's six faces: matched to them it is brightened,
    and its lit cheek and forehead must not clip to flat white (they did on 3.4% of the
    faces' pixels, against 0.1% in t1). The astronaut on t1 at 35% exposure (an
    underexposed shot) is darkened, and her shadows must not crush to black (1.4%, against
    0.1%)."""
    from vfxmocap.processors.face_swap.masks import MaskOptions, face_mask

    target = (t1.astype(np.float32) * exposure).astype(np.uint8)
    out, stats = swap_still(target, [str(sample_path(source))])
    assert stats["faces_swapped"] == 6
    inside = np.zeros(t1.shape[:2], np.uint8)
    for face in analyzer.analyze(target):
        np.maximum(inside, face_mask(t1.shape[:2], face.landmarks, MaskOptions()), out=inside)
    face = inside > 127

    def clipped(image: np.ndarray) -> float:
        return float((image[face] == end).any(axis=1).mean())

    assert clipped(out) <= clipped(target) + 0.005, (clipped(out), clipped(target))


def test_the_frame_behind_a_wider_face_moves_without_folding(analyzer, carphone, astronaut) -> None:
    """carphone stretched to fill 1280x720 (a close-up) under the astronaut's wider face: the
    frame around it is pushed out to her outline. Every triangle of the strips from her
    band out to where the frame is left alone keeps its winding: none folds over, which
    drew the seat behind the man's jaw as a sawtooth of slivers. So too where the ROI leaves
    the ring no room to widen: her own face made 20% longer (chin and forehead pushed out
    to the ROI's margin) folds nothing either."""
    from vfxmocap.processors.face_swap.shape import transfer_shape
    from vfxmocap.processors.face_swap.warp import backdrop_mesh, signed_areas

    def folds(original: np.ndarray, moved: np.ndarray, roi: tuple[int, int, int, int]) -> int:
        behind = backdrop_mesh(original, moved, roi)
        strips = behind.raster.tris[~behind.face]
        before = signed_areas(behind.original.astype(np.float64), strips)
        after = signed_areas(behind.raster.target_xy.astype(np.float64), strips)
        return int(np.sum(before * after <= 0))

    photo = read_image(astronaut)
    source = analyzer.analyze(photo)[0]
    with VideoReader(carphone) as reader:
        frames = list(reader)
    for index in (15, 45, 75):
        frame = cv2.resize(frames[index], (1280, 720), interpolation=cv2.INTER_CUBIC)
        target = analyzer.analyze(frame)[0]
        roi = target_roi(target, frame.shape)
        assert roi is not None
        drawn = transfer_shape(target.landmarks, source.landmarks, 1.0)
        assert folds(target.landmarks, drawn, roi) == 0, index
    longer = source.landmarks.copy()
    centre = longer[:, 1].mean()
    longer[:, 1] = centre + 1.2 * (longer[:, 1] - centre)
    roi = target_roi(source, photo.shape)
    assert roi is not None
    assert folds(source.landmarks, longer, roi) == 0
