"""Motion capture on real footage: tracking, cleaning, skeleton, BVH (checked by FK and by
Blender), keypoint exports, OpenPose control video, face capture and mattes."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ALLOW_SKIP, run_vfx
from vfxmocap.core.errors import Cancelled, InputError
from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
from vfxmocap.media.image import read_image
from vfxmocap.media.sources import open_source
from vfxmocap.media.video import VideoReader, probe
from vfxmocap.mocap import blendshapes, openpose
from vfxmocap.mocap.bvh import CM, animate, fk_from_bvh, read_bvh, write_bvh
from vfxmocap.mocap.filters import FilterOptions, clean
from vfxmocap.mocap.plausible import MIRROR, repair
from vfxmocap.mocap.skeleton import INDEX, NAMES, retarget
from vfxmocap.mocap.take import Take, capture, split, vet
from vfxmocap.samples import sample_path
from vfxmocap.vision.pose import P, PoseTracker
from vfxmocap.workflows import get_workflow

MOCAP = get_workflow("mocap")
BLENDER = shutil.which("blender")


@pytest.fixture(scope="module")
def bikes_capture():
    """The whole take, and the shots handed out while it was captured."""
    tracker = PoseTracker()
    shots: list[Take] = []
    with open_source(sample_path("bikes")) as source:
        take = capture(source, tracker, on_shot=shots.append)
    tracker.close()
    return take, shots


@pytest.fixture(scope="module")
def bikes_take(bikes_capture):
    return bikes_capture[0]


@pytest.fixture(scope="module")
def bikes_vetted(bikes_take):
    return vet(bikes_take)


# Ground truth for bikes.mp4, labelled by looking: every second frame extracted with PyAV to
# PNG contact sheets (frame number on each), then every frame around each boundary, viewed
# one by one. Six shots: the road from above (0-29), a man in a suit cycling through traffic
# who rides out of frame at 44-51 leaving car roofs and a taxi sign (30-75), a cyclist behind
# a van, hidden by a passing white van at 83-102 (76-136), a street behind a fence (137-186),
# walking legs passing a bollard, which then stands alone (187-241), a close-up of a wheel
# (242-249).
BIKES_CUTS = [30, 76, 137, 187, 242]
# Frames with a performer plainly visible: the man 30-43, the cyclist 76-81 and 104-136.
BIKES_VISIBLE = [*range(30, 44), *range(76, 82), *range(104, 137)]
# Frames with nobody to see: the road, the car roofs, the fence, the bollard, the wheel.
BIKES_NOBODY = [*range(30), *range(52, 76), *range(137, 187), *range(215, 250)]
BIKES_HIDDEN = list(range(85, 101))  # the cyclist wholly behind the passing van


@pytest.fixture(scope="module")
def carphone_take():
    tracker = PoseTracker(holistic=True)
    with open_source(sample_path("carphone")) as source:
        take = capture(source, tracker)
    tracker.close()
    return take


def test_take_follows_the_cyclist_through_the_clip(bikes_take) -> None:
    assert bikes_take.frames == 250 and bikes_take.size == (640, 272)
    present = bikes_take.present
    assert 100 < present.sum() < 250  # the rider is not in every frame
    assert np.allclose(np.diff(bikes_take.times), 0.04)
    world = bikes_take.world[present]
    assert np.abs(world[:, [P["left_hip"], P["right_hip"]]]).max() < 0.3  # hip-centred metres


def test_cleaning_fills_gaps_and_smooths(bikes_take) -> None:
    raw = bikes_take.image[:, :, :2].astype(float)
    motion = clean(bikes_take)
    assert np.isfinite(motion.image).all() and np.isfinite(motion.world).all()
    assert motion.held[~bikes_take.present].all()  # absent frames are flagged, not measured
    both = bikes_take.present & np.roll(bikes_take.present, 1) & np.roll(bikes_take.present, -1)
    both[[0, -1]] = False

    def accel(x: np.ndarray) -> float:
        a = x[2:] - 2 * x[1:-1] + x[:-2]
        return float(np.nanmean(np.abs(a[both[1:-1]])))

    assert accel(motion.image) < 0.5 * accel(raw)
    unfiltered = clean(bikes_take, FilterOptions(method="none"))
    trusted = ~unfiltered.held
    assert np.allclose(unfiltered.image[trusted], raw[trusted])
    online = clean(bikes_take, FilterOptions(method="oneeuro"))
    assert accel(online.image) < accel(raw)


def test_skeleton_bones_are_symmetric_and_human(bikes_take) -> None:
    animation = animate(clean(bikes_take))
    lengths = animation.lengths
    for name in NAMES:
        mirror = name.replace("Left", "Right")
        assert lengths[name] == pytest.approx(lengths[mirror])
    assert 0.2 < lengths["LeftUpLeg"] < 0.6 and 0.2 < lengths["LeftLeg"] < 0.6
    assert 0.15 < lengths["LeftArm"] < 0.45


def test_bvh_forward_kinematics_reproduces_the_filtered_pose(bikes_take, tmp_path: Path) -> None:
    """FK of the written file (parsed back, Euler ZXY) against the filtered 3D joints
    rebuilt with the skeleton's fixed bone lengths. Measured: 0.001 mm mean, 0.002 mm max
    (the file's decimal places); a wrong axis order or sign would be centimetres."""
    motion = clean(bikes_take)
    animation = animate(motion)
    path = write_bvh(animation, tmp_path / "bikes.bvh")
    names, values, frame_time = read_bvh(path)
    assert names == NAMES and values.shape == (250, 6 + 3 * (len(NAMES) - 1))
    assert frame_time == pytest.approx(0.04)
    positions = fk_from_bvh(path, animation.lengths) - animation.root[:, None]
    expected = retarget(motion.world, animation.lengths)
    error = np.linalg.norm(positions - expected, axis=2)[bikes_take.present]
    assert error.max() < 1e-4  # 0.1 mm


def test_feet_are_locked_while_planted() -> None:
    """A foot sliding back under a planted stance (as in walking) moves the root forward
    instead: in the world the planted foot stays put."""
    from vfxmocap.mocap.bvh import _lock_feet

    n, joints = 40, len(NAMES)
    local = np.zeros((n, joints, 3))
    local[:, INDEX["LeftToe"]] = [0.1, -0.9, 0.0]
    local[:, INDEX["RightToe"]] = [-0.1, -0.85, 0.0]
    local[:, INDEX["LeftToe"], 2] = -0.01 * np.arange(n)  # slides back 1 cm a frame
    times = np.arange(n) / 30
    root, contacts = _lock_feet(local, np.zeros((n, 3)), times)
    assert contacts[:, 0].all()
    world_foot = local[:, INDEX["LeftToe"]] + root
    assert np.ptp(world_foot[:, 2]) < 0.005 and np.ptp(world_foot[:, 0]) < 0.005
    assert root[-1, 2] == pytest.approx(0.39, abs=0.01)
    assert world_foot[:, 1].min() == pytest.approx(0.0, abs=1e-6)  # on the ground


def test_root_follows_the_hips_through_a_jump() -> None:
    """Feet off the ground (no contact) for frames 10-19 while the hips rise 30 cm in the
    image: the root rises with them, and is back on the floor once the feet land."""
    from vfxmocap.mocap.bvh import _lock_feet

    n, joints = 30, len(NAMES)
    local = np.zeros((n, joints, 3))
    local[:, INDEX["LeftToe"]] = [0.1, -0.9, 0.0]
    local[:, INDEX["RightToe"]] = [-0.1, -0.9, 0.0]
    image_root = np.zeros((n, 3))
    image_root[10:20, 1] = 0.3 * np.sin(np.linspace(0.1, np.pi - 0.1, 10))
    root, contacts = _lock_feet(local, image_root, np.arange(n) / 30)
    assert contacts[:8].all() and not contacts[12:18].any()
    assert root[:6, 1] == pytest.approx(0.9, abs=1e-6)  # standing: hips 0.9 m up
    assert root[15, 1] > 1.1  # in the air
    assert root[-6:, 1] == pytest.approx(0.9, abs=1e-6)  # landed


def _blender(path: Path, *frames: int) -> dict:
    if BLENDER is None:
        if ALLOW_SKIP:
            pytest.skip("blender is not installed (VFX_TEST_ALLOW_SKIP=1)")
        pytest.fail("blender is not installed: apt-get install blender (.ci/run does)")
    script = Path(__file__).with_name("blender_bvh.py")
    done = subprocess.run(
        [
            BLENDER,
            "-b",
            "--factory-startup",
            "--python",
            str(script),
            "--",
            str(path),
            *map(str, frames),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def _to_blender(p: np.ndarray) -> np.ndarray:
    """BVH (Y up, Z toward the viewer) to Blender (Z up) as its importer maps axes."""
    return np.array([p[0], -p[2], p[1]])


def test_blender_imports_the_bvh_as_we_wrote_it(bikes_take, tmp_path: Path) -> None:
    motion = clean(bikes_take)
    animation = animate(motion)
    path = write_bvh(animation, tmp_path / "bikes.bvh")
    frames = [110, 120, 130]  # the cyclist plainly visible, legs too: upright in Blender
    seen = _blender(path, *(f + 1 for f in frames))  # Blender counts frames from 1
    assert seen["bones"] == NAMES
    assert seen["frame_range"] == [1.0, 250.0] and seen["fps"] == pytest.approx(25.0)
    ours = animation.positions()
    for f in frames:
        for name in ("Hips", "Head", "LeftHand", "RightFoot"):
            theirs = np.array(seen["positions"][str(f + 1)][name])
            assert np.linalg.norm(theirs - _to_blender(ours[f, INDEX[name]])) < 0.01, (f, name)
        blender_pose = seen["positions"][str(f + 1)]
        assert blender_pose["Head"][2] > blender_pose["Hips"][2] > blender_pose["LeftFoot"][2]


def test_a_raised_arm_is_raised_in_blender(bikes_take, tmp_path: Path) -> None:
    """The cyclist's left arm, lifted overhead in the 3D landmarks, comes out lifted in
    Blender: its hand above its head. Unedited, the hand stays below the head."""
    motion = clean(bikes_take)
    frame = 120
    raised = motion.world.copy()
    shoulder = raised[:, P["left_shoulder"]]
    for k, name in enumerate(("left_elbow", "left_wrist", "left_index", "left_pinky")):
        raised[:, P[name]] = shoulder + np.array([0.05, 0.28 * (k + 1) if k < 2 else 0.6, 0.0])
    edited = type(motion)(
        motion.times, motion.image, raised, motion.visibility, motion.held, motion.present
    )
    for world_motion, up in ((motion, False), (edited, True)):
        path = write_bvh(animate(world_motion), tmp_path / f"arm_{up}.bvh")
        pose = _blender(path, frame + 1)["positions"][str(frame + 1)]
        assert (pose["LeftHand"][2] > pose["Head"][2]) is up


def test_still_image_gives_a_one_frame_bvh_and_json(tmp_path: Path) -> None:
    result = MOCAP({"input": str(sample_path("astronaut")), "output_dir": tmp_path})
    _, values, _ = read_bvh(result.outputs["bvh"])
    assert len(values) == 1
    doc = json.loads(result.outputs["json"].read_text())
    assert doc["schema"] == "vfxmocap.mocap/2" and doc["frames"] == 1


def test_no_person_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no person found"):
        MOCAP(
            {"input": str(sample_path("coffee")), "output_dir": tmp_path / "out", "matte": "mask"}
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cancelled_export_leaves_no_outputs(tmp_path: Path) -> None:
    """Cancelled while the control video renders: the JSON and BVH already written go too."""
    cancel = CancelToken()

    def on_event(event: ProgressEvent) -> None:
        if event.stage == "export":
            cancel.cancel()

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        MOCAP(
            {
                "input": str(sample_path("carphone")),
                "output_dir": out,
                "pose_video": True,
                "csv": True,
            },
            Progress(on_event),
            cancel,
        )
    assert not out.exists() or not list(out.iterdir())


def test_face_csv_without_a_face_writes_nothing(tmp_path: Path) -> None:
    """The face check comes before any export is written."""
    from vfxmocap.mocap import blendshapes as shapes_module

    out = tmp_path / "out"
    real = shapes_module.face_capture

    def no_face(face, times):  # type: ignore[no-untyped-def]
        shapes, rotations, found = real(face, times)
        return shapes, rotations, np.zeros_like(found)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes_module, "face_capture", no_face)
        with pytest.raises(InputError, match="no face found"):
            MOCAP({"input": str(sample_path("astronaut")), "output_dir": out, "face_csv": True})
    assert not out.exists() or not list(out.iterdir())


def test_exports_json_csv_npz(tmp_path: Path) -> None:
    """Merged: one set over the whole clip, with per-frame and per-joint confidence and the
    reason for every absent frame."""
    result = MOCAP(
        {
            "input": str(sample_path("bikes")),
            "output_dir": tmp_path,
            "csv": True,
            "npz": True,
            "bvh": False,
            "merge_takes": True,
        }
    )
    doc = json.loads(result.outputs["json"].read_text())
    assert doc["frames"] == 250 and len(doc["landmarks"]) == 33 and doc["fps"] == 25.0
    assert [f["frame"] for f in doc["data"]] == list(range(250))
    frame = doc["data"][120]
    assert frame["present"] and len(frame["pose"]) == 33 and frame["confidence"] > 0.8
    assert len(frame["pose"][0]) == len(doc["point_fields"]) and "reason" not in frame
    bollard = next(f["frame"] for f in doc["data"][215:] if f.get("reason") == "off_person_mask")
    assert doc["data"][bollard]["confidence"] == 0
    present = [f["present"] for f in doc["data"]]
    assert 0 < sum(present) < 250
    with result.outputs["csv"].open() as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 251 and len(rows[0]) == 5 + 33 * 7
    assert rows[bollard + 1][:3] == [str(bollard), f"{bollard / 25:.5f}", "0"]
    assert rows[bollard + 1][4] == "off_person_mask"
    npz = np.load(result.outputs["npz"])
    assert npz["world"].shape == (250, 33, 3) and npz["joint_confidence"].shape == (250, 33)
    assert (npz["joint_confidence"][~npz["present"]] == 0).all()
    assert result.summary["frames_with_person"] == int(npz["present"].sum()) == sum(present)


def test_openpose_drawing_matches_controlnet_conventions() -> None:
    """Neck and right shoulder alone: two joint circles (radius 4, part colours) and one limb,
    red, blended 0.6 over the black canvas (ControlNet's addWeighted(canvas, 0.4, limb, 0.6))."""
    coco = np.full((18, 2), np.nan)
    coco[1], coco[2] = (100, 100), (160, 100)
    image = openpose.control_image((320, 240), coco)
    assert image.shape == (240, 320, 3) and image[0, 0].tolist() == [0, 0, 0]
    assert image[100, 130].tolist() == [153, 0, 0]  # limb middle: 0.6 * (255, 0, 0)
    assert image[100 + 4, 130].tolist() == [153, 0, 0]  # stick half-width 4
    assert image[100 + 6, 130].tolist() == [0, 0, 0]
    # the right shoulder's circle (colour 2, (255, 170, 0)) beyond the limb's end: untouched
    assert image[100, 162].tolist() == [255, 170, 0]
    assert image[100, 97].tolist() == [255, 85, 0]  # the neck's circle (colour 1)
    # missing points draw nothing
    empty = openpose.control_image((320, 240), np.full((18, 2), np.nan))
    assert not empty.any()


def _controlnet_draw_body(canvas: np.ndarray, points: np.ndarray) -> np.ndarray:
    """ControlNet's draw_bodypose as it is written: each limb filled on a copy of the whole
    canvas, which is then blended back."""
    import math

    import cv2

    for i in range(18):
        if np.isfinite(points[i]).all():
            cv2.circle(canvas, (int(points[i][0]), int(points[i][1])), 4, openpose.COLORS[i], -1)
    for i, (a, b) in enumerate(openpose.LIMB_SEQ[:17]):
        ya, yb = points[a - 1], points[b - 1]
        if not (np.isfinite(ya).all() and np.isfinite(yb).all()):
            continue
        limb = canvas.copy()
        mx, my = (ya[1] + yb[1]) / 2, (ya[0] + yb[0]) / 2
        length = math.hypot(ya[1] - yb[1], ya[0] - yb[0])
        angle = math.degrees(math.atan2(ya[1] - yb[1], ya[0] - yb[0]))
        polygon = cv2.ellipse2Poly((int(my), int(mx)), (int(length / 2), 4), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(limb, polygon, openpose.COLORS[i])
        canvas = cv2.addWeighted(canvas, 0.4, limb, 0.6, 0)
    return canvas


def test_limbs_blended_in_their_box_give_controlnets_pixels(bikes_take) -> None:
    """Blending each limb over its bounding box only is the same picture as ControlNet's
    whole-canvas blend, on the cyclist's real skeletons over their frames and on black,
    limbs cut by the frame's edge included."""
    with VideoReader(sample_path("bikes")) as reader:
        frames = {i: f for i, f in enumerate(reader) if i in (34, 110, 130)}
    for i, frame in frames.items():
        assert bikes_take.present[i]
        coco = openpose.to_coco18(bikes_take.image[i, :, :2], bikes_take.image[i, :, 2])
        shifted = coco + np.array([frame.shape[1] * 0.6, -frame.shape[0] * 0.3])  # off two edges
        for points in (coco, shifted):
            for canvas in (frame, np.zeros_like(frame)):
                expected = _controlnet_draw_body(canvas.copy(), points)
                assert np.array_equal(openpose.draw_body(canvas.copy(), points), expected)


def test_blazepose_to_coco18_mapping() -> None:
    points = np.arange(66, dtype=float).reshape(33, 2)
    coco = openpose.to_coco18(points, np.ones(33))
    assert np.allclose(coco[1], (points[P["left_shoulder"]] + points[P["right_shoulder"]]) / 2)
    assert np.allclose(coco[2], points[P["right_shoulder"]])
    assert np.allclose(coco[13], points[P["left_ankle"]])
    hidden = openpose.to_coco18(points, np.where(np.arange(33) == P["nose"], 0.1, 1.0))
    assert np.isnan(hidden[0]).all()


def test_pose_video_has_the_inputs_size_rate_and_length(tmp_path: Path) -> None:
    result = MOCAP(
        {
            "input": str(sample_path("bikes")),
            "output_dir": tmp_path,
            "pose_video": True,
            "preview": True,
            "bvh": False,
            "merge_takes": True,
        }
    )
    present = [f["present"] for f in json.loads(result.outputs["json"].read_text())["data"]]
    src, ctl = probe(sample_path("bikes")), probe(result.outputs["pose_video"])
    assert (ctl.width, ctl.height, ctl.frame_count) == (src.width, src.height, src.frame_count)
    assert ctl.frame_rate == src.frame_rate
    frames = list(VideoReader(result.outputs["pose_video"]))
    absent = present.index(False)
    assert frames[absent].max() < 20  # no person: a black frame
    assert (frames[120].max(axis=2) > 100).sum() > 200  # the skeleton
    assert probe(result.outputs["preview"]).frame_count == src.frame_count


def test_face_capture_follows_the_talking_man(carphone_take, tmp_path: Path) -> None:
    shapes, rotations, found = blendshapes.face_capture(carphone_take.face, carphone_take.times)
    assert found.all()
    jaw = shapes[:, blendshapes.LIVE_LINK_SHAPES.index("JawOpen")]
    assert jaw[:20].mean() < 0.35 and jaw[55:62].max() > 0.8  # he opens wide around frame 59
    path = blendshapes.write_live_link_csv(
        tmp_path / "face.csv", carphone_take.times, carphone_take.fps, shapes, rotations
    )
    with path.open() as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"]
    assert len(header) == 2 + 52 + 9 and header[-9:-6] == ["HeadYaw", "HeadPitch", "HeadRoll"]
    assert len(rows) == 121 and rows[1][1] == "61"
    assert rows[2][0] == "00:00:00:01.000"


@pytest.mark.parametrize("mode", ["mask", "green", "blur", "alpha", "image"])
def test_mattes(tmp_path: Path, mode: str) -> None:
    inputs = {
        "input": str(sample_path("carphone")),
        "output_dir": tmp_path,
        "matte": mode,
        "bvh": False,
        "json": False,
        "max_frames": 10,
    }
    if mode == "image":
        inputs["matte_background"] = str(sample_path("coffee"))
    result = MOCAP(inputs)
    out = result.outputs["matte"]
    if mode == "alpha":
        pngs = sorted(out.glob("*.png"))
        assert len(pngs) == 10
        rgba = read_image(pngs[0], keep_alpha=True)
        assert rgba.shape == (144, 176, 4)
        assert rgba[60, 80, 3] > 200 and rgba[10, 170, 3] < 60  # the man opaque, the car not
    else:
        first = next(iter(VideoReader(out)))
        assert first.shape == (144, 176, 3)
        if mode == "mask":
            assert first[60, 80].mean() > 200 and first[10, 170].mean() < 60
        if mode == "green":
            assert first[10, 170, 1] > 200 and first[10, 170, 0] < 60


def test_cli_mocap_writes_and_reports(tmp_path: Path) -> None:
    result = run_vfx("mocap", "-i", sample_path("bikes"), "-o", tmp_path, "--pose-video", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    per_take = {f"take{n:02d}_{kind}" for n in (2, 3) for kind in ("bvh", "json", "pose_video")}
    assert set(report["outputs"]) == {"takes"} | per_take
    assert report["summary"]["frames"] == 250 and report["summary"]["takes_found"] == 6
    one = run_vfx("mocap", "-i", sample_path("bikes"), "-o", tmp_path / "t3", "--take", "3")
    assert one.returncode == 0, one.stderr
    _, values, _ = read_bvh(tmp_path / "t3" / "motion.bvh")
    assert len(values) == 61  # frames 76-136


def test_cli_no_person_exits_3(tmp_path: Path) -> None:
    result = run_vfx("mocap", "-i", sample_path("coffee"), "-o", tmp_path / "o")
    assert result.returncode == 3 and "no person found" in result.stderr
    assert not (tmp_path / "o" / "motion.bvh").exists()


def test_bvh_units_are_centimetres(bikes_take, tmp_path: Path) -> None:
    animation = animate(clean(bikes_take))
    text = write_bvh(animation, tmp_path / "m.bvh").read_text()
    offset = [line for line in text.splitlines() if "OFFSET" in line][1]  # Spine
    assert float(offset.split()[2]) == pytest.approx(animation.lengths["Hips"] * CM, abs=1e-3)


def test_several_people_are_reported(tmp_path: Path) -> None:
    result = MOCAP({"input": str(sample_path("t1")), "output_dir": tmp_path, "bvh": False})
    meta = json.loads(result.outputs["json"].read_text())["meta"]
    assert meta["several_people"] is True and "from the left (largest)" in meta["people"]
    person = json.loads(result.outputs["takes"].read_text())["takes"][0]["person"]
    assert person["people_in_view"] >= 3 and person["choice"] == "largest"
    assert result.summary["takes"][0]["person"] == person["description"]


def test_variable_frame_rate_is_resampled_for_bvh(tmp_path: Path, bikes_take) -> None:
    """Container timestamps drive the JSON; the BVH gets a uniform rate at the median step."""
    from vfxmocap.mocap.bvh import uniform

    motion = clean(bikes_take)
    jitter = np.where(np.arange(len(motion.times)) % 2 == 0, 0.0, 0.012)
    vfr = type(motion)(
        motion.times + jitter,
        motion.image,
        motion.world,
        motion.visibility,
        motion.held,
        motion.present,
    )
    resampled = uniform(vfr)
    steps = np.diff(resampled.times)
    assert np.allclose(steps, steps[0]) and resampled.times[-1] <= vfr.times[-1] + steps[0]
    animation = animate(vfr)
    assert animation.frame_time == pytest.approx(steps[0])
    assert len(animation.root) == len(resampled.times)


def test_corrupt_input_exits_3(tmp_path: Path, bad_media) -> None:
    path, reason = bad_media["corrupt"]
    result = run_vfx("mocap", "-i", path, "-o", tmp_path / "o")
    assert result.returncode == 3 and reason in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "motion.bvh").exists()


def test_shots_handed_out_during_capture_are_the_takes(bikes_capture) -> None:
    """The control video is drawn from each shot as capture goes on: those shots, vetted
    and repaired alone, must be exactly the takes the export cuts from the whole clip."""
    take, shots = bikes_capture
    takes = [repair(t) for t in split(vet(take))]
    assert len(shots) == len(takes) == len(take.cuts) + 1
    for shot, expected in zip(shots, takes, strict=True):
        got = repair(vet(shot))
        assert got.frame_range == expected.frame_range
        assert got.reasons == expected.reasons
        np.testing.assert_array_equal(got.image, expected.image)
        np.testing.assert_array_equal(got.world, expected.world)
        np.testing.assert_array_equal(got.times, expected.times)
        assert got.size == expected.size
    assert any(t.present.any() for t in takes) and not all(t.present.any() for t in takes)


def test_cuts_split_bikes_into_its_shots(bikes_take) -> None:
    """The detector finds the five cuts seen by eye, at the same frames, and nothing else."""
    assert bikes_take.cuts == BIKES_CUTS
    takes = split(bikes_take)
    assert [t.frame_range for t in takes] == [
        (0, 29),
        (30, 75),
        (76, 136),
        (137, 186),
        (187, 241),
        (242, 249),
    ]


def test_presence_only_where_a_person_is(bikes_take, bikes_vetted) -> None:
    """MediaPipe fits skeletons to the road, the car roofs, the fence and the bollard; the
    checks leave none of them present and keep the plainly visible performers."""
    raw, present = bikes_take.present, bikes_vetted.present
    assert raw[BIKES_NOBODY].mean() > 0.3  # what the tracker alone claims
    assert present[BIKES_NOBODY].mean() <= 0.05
    assert present[BIKES_HIDDEN].mean() <= 0.05
    assert present[BIKES_VISIBLE].mean() >= 0.9
    reasons = bikes_vetted.reasons
    assert reasons[10] == "low_visibility"  # the road from above
    bollard = {reasons[i] for i in range(215, 242) if raw[i]}
    assert bollard == {"off_person_mask"}  # every skeleton fitted to the bollard
    assert all(reasons[i] == "" for i in np.flatnonzero(present))


def test_only_frames_passing_the_pose_scores_are_segmented() -> None:
    """The road seen from above and the first frames of the man in traffic: the road's
    frames fail on the pose's own scores and need no mask; the man's are segmented, each
    mask a shrunk frame's, and present. A matte asks for every frame's mask."""
    from vfxmocap.media.sources import IteratorSource
    from vfxmocap.mocap.take import CHECK_WIDTH
    from vfxmocap.vision.segmentation import PersonSegmenter

    with VideoReader(sample_path("bikes")) as reader:
        frames = [f for i, f in enumerate(reader) if 20 <= i < 40]  # road to 29, then the man
    segmenter = PersonSegmenter()
    calls = [0]
    real = segmenter._model.process

    def counted(image: np.ndarray):  # type: ignore[no-untyped-def]
        calls[0] += 1
        assert image.shape[1] == CHECK_WIDTH
        return real(image)

    segmenter._model.process = counted
    masks: dict[bool, list[bool]] = {}
    try:
        for keep in (False, True):
            calls[0] = 0
            seen: list[bool] = []
            tracker = PoseTracker()
            try:
                take = capture(
                    IteratorSource(frames, fps=25.0),
                    tracker,
                    segmenter=segmenter,
                    keep_masks=keep,
                    on_frame=lambda frame, pose, seen=seen: seen.append(
                        pose.person_mask is not None
                    ),
                )
            finally:
                tracker.close()
            vetted = vet(take)
            assert take.cuts == [10] and vetted.present[10:].mean() >= 0.9
            assert not vetted.present[:10].any()
            masks[keep] = seen
            if keep:
                assert calls[0] == len(frames) and all(seen)
            else:
                assert calls[0] == sum(seen) and 10 <= calls[0] < len(frames)
    finally:
        segmenter.close()
    assert masks[False][10:] == [True] * 10  # the man: every frame checked on the mask


def test_lose_runs_a_blank_frame_only_while_tracking(carphone_frames) -> None:
    """After a frame with the man in it the graph tracks his region, and losing it costs a
    blank frame; after a frame with nobody the graph detects anyway: nothing to run."""
    tracker = PoseTracker()
    runs: list[tuple[int, ...]] = []
    real = tracker._model.process

    def counted(image: np.ndarray):  # type: ignore[no-untyped-def]
        runs.append(image.shape)
        return real(image)

    tracker._model.process = counted
    try:
        assert tracker(carphone_frames[0]).present
        tracker.lose()
        assert runs[-1] == (64, 64, 3) and len(runs) == 2
        tracker.lose()  # the blank found nobody
        assert len(runs) == 2
        assert not tracker(np.zeros_like(carphone_frames[0])).present
        tracker.lose()
        assert len(runs) == 3
        assert tracker(carphone_frames[1]).present  # found again by the detector
    finally:
        tracker.close()


def test_carphone_is_one_take_present_throughout(carphone_take) -> None:
    vetted = vet(carphone_take)
    assert carphone_take.cuts == [] and len(split(vetted)) == 1
    assert vetted.present.all()


def test_per_take_outputs_and_takes_json(tmp_path: Path) -> None:
    result = MOCAP({"input": str(sample_path("bikes")), "output_dir": tmp_path, "csv": True})
    doc = json.loads(result.outputs["takes"].read_text())
    assert doc["cuts"] == BIKES_CUTS and len(doc["takes"]) == 6
    assert [t["coverage"] > 0 for t in doc["takes"]] == [False, True, True, False, False, False]
    assert not (tmp_path / "take01").exists()  # the road: no person, no files
    take3 = doc["takes"][2]
    assert (take3["first_frame"], take3["last_frame"], take3["frames"]) == (76, 136, 61)
    assert take3["duration_s"] == pytest.approx(61 / 25) and take3["jitter_px"] > 0
    pose = json.loads((tmp_path / "take03" / "pose.json").read_text())
    assert [f["frame"] for f in pose["data"]] == list(range(76, 137))
    assert pose["data"][0]["time"] == pytest.approx(76 / 25)
    _, values, _ = read_bvh(result.outputs["take03_bvh"])
    assert len(values) == 61
    assert result.summary["takes"][2]["coverage"] == take3["coverage"]


def test_take_option_picks_one_and_refuses_an_empty_take(tmp_path: Path) -> None:
    result = MOCAP({"input": str(sample_path("bikes")), "output_dir": tmp_path, "take": 2})
    frames = [f["frame"] for f in json.loads(result.outputs["json"].read_text())["data"]]
    assert frames == list(range(30, 76))
    with pytest.raises(InputError, match="no person found in any frame of take 4"):
        MOCAP({"input": str(sample_path("bikes")), "output_dir": tmp_path / "4", "take": 4})


def test_swapped_sides_are_repaired_and_flips_rejected(bikes_vetted) -> None:
    """The cyclist's take with left and right exchanged in one frame and the body turned
    upside down in another: the swap is undone, the flip made absent."""
    take = split(bikes_vetted)[2]
    broken = type(take)(**{**take.__dict__, "image": take.image.copy(), "world": take.world.copy()})
    swap, flip = 40, 50  # rows: source frames 116 and 126
    broken.image[swap], broken.world[swap] = take.image[swap, MIRROR], take.world[swap, MIRROR]
    broken.world[flip, :, 1] *= -1
    fixed = repair(broken)
    assert np.allclose(fixed.image[swap, :, :2], take.image[swap, :, :2])
    assert fixed.repaired[swap] and fixed.reasons[flip] == "flipped"
    assert not fixed.present[flip]
    untouched = repair(take)
    assert untouched.present.sum() == take.present.sum()


# Two real people side by side: carphone's talking man (its middle, scaled to 272 rows) on
# the left, bikes.mp4's cyclist behind the van (source frames 76-136, the 320 columns around
# him) on the right. The cyclist is hidden by the passing van at 85-100 and seen again from
# 104; the man is in every frame, and the larger of the two.
SPLIT = 306  # the left picture's width: the man is left of it, the cyclist right of it


def _side_by_side(first: int = 76) -> list[np.ndarray]:
    import cv2

    with VideoReader(sample_path("carphone")) as reader:
        man = [cv2.resize(f[8:136, 16:160], (SPLIT, 272)) for f in reader]
    with VideoReader(sample_path("bikes")) as reader:
        rider = [f[:, 260:580] for i, f in enumerate(reader) if first <= i <= 136]
    return [np.ascontiguousarray(np.hstack([man[i], r])) for i, r in enumerate(rider)]


@pytest.fixture(scope="module")
def two_people() -> list[np.ndarray]:
    return _side_by_side()


def _follow(frames: list[np.ndarray], person: object):
    from vfxmocap.media.sources import IteratorSource

    tracker = PoseTracker()
    try:
        take = vet(capture(IteratorSource(frames, fps=25.0), tracker, person=person))
    finally:
        tracker.close()
    torso = take.image[:, [P["left_shoulder"], P["right_shoulder"]], 0].mean(axis=1)
    return take, torso


@pytest.mark.parametrize("person", ["left", 1, "largest"])
def test_the_man_on_the_left_is_followed_and_never_left(two_people, person) -> None:
    take, torso = _follow(two_people, person)
    assert take.cuts == [] and take.followed[0].people_in_view == 2
    assert take.followed[0].index == 1  # first from the left
    assert take.present.mean() >= 0.9
    assert (torso[take.present] < SPLIT).all()  # never the cyclist, seen or hidden


@pytest.mark.parametrize("person", ["right", 2])
def test_the_cyclist_on_the_right_is_followed_and_never_left(two_people, person) -> None:
    """Hidden by the van, the cyclist is absent: the man beside him is not taken instead."""
    take, torso = _follow(two_people, person)
    assert take.followed[0].index == 2 and take.followed[0].people_in_view == 2
    assert (torso[take.present] > SPLIT).all()
    rows = take.frame_index + 76
    assert take.present[(rows >= 85) & (rows <= 100)].sum() == 0
    assert take.present[rows >= 104].mean() >= 0.9


def test_a_person_who_appears_later_is_not_followed() -> None:
    """From source frame 86 the cyclist is behind the van: the man alone is in view, and is
    followed on after the cyclist comes out."""
    take, torso = _follow(_side_by_side(first=86), "largest")
    assert take.followed[0].people_in_view == 1 and take.followed[0].index == 1
    assert take.present.mean() >= 0.9 and (torso[take.present] < SPLIT).all()


def test_person_not_in_view_follows_nobody(two_people) -> None:
    take, _ = _follow(two_people[:10], 3)
    assert take.followed[0].index is None and not take.present.any()
    assert take.followed[0].describe() == "person 3 not in view (2 seen)"


def test_cli_says_who_is_followed(two_people, tmp_path: Path) -> None:
    from tests.conftest import encode_test_video

    clip = encode_test_video(tmp_path / "two.mp4", two_people[:20], rate=25)
    result = run_vfx("mocap", "-i", clip, "-o", tmp_path / "o", "--person", "2")
    assert result.returncode == 0, result.stderr
    assert "person 2 of 2 from the left (2)" in result.stdout
    doc = json.loads((tmp_path / "o" / "takes.json").read_text())
    person = doc["takes"][0]["person"]
    assert (person["followed"], person["people_in_view"], person["chosen_at_frame"]) == (2, 2, 0)
    assert person["box"][0] > SPLIT
    bad = run_vfx("mocap", "-i", clip, "-o", tmp_path / "b", "--person", "tallest")
    assert bad.returncode == 2 and "person" in bad.stderr and "Traceback" not in bad.stderr


def test_camera_capture_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A camera (OpenCV's capture, fed carphone's frames as camera 0): a BVH of the frames
    asked for, the preview drawn as they arrive, the talking man present in each."""
    import cv2

    real = cv2.VideoCapture
    clip = str(sample_path("carphone"))
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: real(clip if index == 0 else index))
    result = MOCAP({"input": "camera:0", "output_dir": tmp_path, "max_frames": 24, "preview": True})
    doc = json.loads(result.outputs["json"].read_text())
    assert doc["source"] == "camera:0" and doc["frames"] == 24
    assert all(f["present"] for f in doc["data"])
    assert probe(result.outputs["preview"]).frame_count == 24
    names, values, frame_time = read_bvh(result.outputs["bvh"])  # resampled: camera clock
    assert names == NAMES and len(values) * frame_time == pytest.approx(
        doc["data"][-1]["time"], abs=2 * frame_time
    )
