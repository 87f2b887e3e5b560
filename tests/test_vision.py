"""Face analysis and tracking on real faces: detection, landmarks, pose, stable IDs, smoothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vfxmocap.media.image import read_image
from vfxmocap.media.video import VideoReader
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import MediaPipeFaceAnalyzer
from vfxmocap.vision.filters import OneEuroFilter, OneEuroParams
from vfxmocap.vision.landmarks import NUM_LANDMARKS, five_points, head_pose, triangles
from vfxmocap.vision.tracking import FaceTracker, TrackerOptions


@pytest.fixture(scope="module")
def analyzer():
    a = MediaPipeFaceAnalyzer()
    yield a
    a.close()


def test_one_face_in_astronaut(analyzer, astronaut: Path) -> None:
    faces = analyzer.analyze(read_image(astronaut))
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (NUM_LANDMARKS, 3)
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # her face, not the flag or the suit
    assert abs(face.pose.yaw) < 20 and abs(face.pose.roll) < 15


def test_six_faces_in_group_photo(analyzer) -> None:
    faces = analyzer.analyze(read_image(sample_path("t1")))
    assert len(faces) == 6
    assert all(60 < f.width < 200 for f in faces)
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


def test_a_face_cut_by_its_crop_is_found_with_room_around_it(analyzer, astronaut: Path) -> None:
    """An aligned face crop (112 px, the face reaching past its edges, as insightface's
    samples): plain analysis finds nothing; `analyze_photo` gives it reflected room and
    finds the face, its landmarks within 1% of the crop's side of those the whole photo
    gives (measured 1.05 px); a photo with room is analysed as before."""
    image = read_image(astronaut)
    whole = analyzer.analyze(image)[0]
    x0, y0, x1, y1 = whole.box
    side = 0.84 * max(x1 - x0, y1 - y0)  # 8% of the face cut off on each side
    left, top = int((x0 + x1 - side) / 2), int((y0 + y1 - side) / 2)
    crop = image[top : top + int(side), left : left + int(side)]
    small = cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)
    truth = (whole.landmarks[:, :2] - [left, top]) * (112 / int(side))
    assert analyzer.analyze(small) == []
    found = analyzer.analyze_photo(small)
    assert len(found) == 1
    assert np.linalg.norm(found[0].landmarks[:, :2] - truth, axis=1).mean() < 1.12
    again = analyzer.analyze_photo(image)[0]
    assert np.array_equal(again.landmarks, whole.landmarks)


def test_no_face_in_coffee(analyzer) -> None:
    assert analyzer.analyze(read_image(sample_path("coffee"))) == []


def test_mirror_image_mirrors_the_pose(analyzer) -> None:
    image = read_image(sample_path("camera"))  # a man in near-profile
    face = analyzer.analyze(image)[0]
    mirrored = analyzer.analyze(np.ascontiguousarray(image[:, ::-1]))[0]
    assert abs(face.pose.yaw) > 25
    assert mirrored.pose.yaw == pytest.approx(-face.pose.yaw, abs=8)
    assert mirrored.pose.roll == pytest.approx(-face.pose.roll, abs=8)


def test_five_points_are_in_insightface_order(analyzer, astronaut: Path) -> None:
    kps = five_points(analyzer.analyze(read_image(astronaut))[0].landmarks)
    eye_l, eye_r, nose, mouth_l, mouth_r = kps
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])


def test_mesh_triangles_cover_eyes_and_mouth() -> None:
    tris = triangles()
    assert tris.shape[1] == 3 and len(tris) >= 880
    assert tris.max() < 468  # the 10 iris points are not part of the surface


def test_huge_image_is_analysed_downscaled(analyzer, astronaut: Path) -> None:
    """An 8K+ frame: detection runs on a smaller copy, landmarks land on full-size pixels."""
    small = read_image(astronaut)
    big = cv2.resize(small, None, fx=17, fy=17, interpolation=cv2.INTER_LINEAR)  # 8704 px
    face = analyzer.analyze(big)[0]
    reference = analyzer.analyze(small)[0]
    assert np.allclose(face.box / 17, reference.box, atol=4)


def test_tracker_keeps_one_id_through_a_talking_head(analyzer, carphone: Path) -> None:
    tracker = FaceTracker(analyzer)
    ids = set()
    for t, frame in VideoReader(carphone).timed():
        faces = tracker.update(cv2.resize(frame, (528, 432)), t)
        assert len(faces) == 1
        ids.add(faces[0].track_id)
    assert ids == {0}


def test_tracker_gives_six_stable_ids(analyzer) -> None:
    image = read_image(sample_path("t1"))
    tracker = FaceTracker(analyzer, TrackerOptions(detect_every=3))
    seen = [sorted(f.track_id for f in tracker.update(image, i / 30)) for i in range(7)]
    assert all(ids == [0, 1, 2, 3, 4, 5] for ids in seen)


def _with_gap(frames, gap_frame, start: int, length: int):
    return [gap_frame if start <= i < start + length else f for i, f in enumerate(frames)]


def test_lost_face_keeps_its_id_within_max_missed(analyzer, carphone_frames) -> None:
    frames = [cv2.resize(f, (352, 288)) for f in carphone_frames]
    empty = cv2.resize(read_image(sample_path("coffee")), (352, 288))
    for gap, same in ((5, True), (12, False)):
        tracker = FaceTracker(analyzer, TrackerOptions(max_missed=8))
        ids = [
            [f.track_id for f in tracker.update(fr, i / 30)]
            for i, fr in enumerate(_with_gap(frames, empty, 10, gap))
        ]
        before, after = ids[5], ids[10 + gap + 1]
        assert ids[12] == []  # the face is gone during the gap
        assert (before == after) is same, (gap, before, after)


def test_one_euro_removes_shimmer_of_a_still_face(analyzer, astronaut: Path) -> None:
    """Sensor-like noise on a still photo makes raw landmarks shimmer; filtered ones hold."""
    image = read_image(astronaut).astype(np.int16)
    rng = np.random.default_rng(1)
    raw, smooth = [], []
    for options, out in ((TrackerOptions(smooth=False), raw), (TrackerOptions(), smooth)):
        tracker = FaceTracker(analyzer, options)
        for i in range(40):
            noisy = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
            out.append(tracker.update(noisy, i / 30)[0].landmarks[:, :2])
    shimmer = lambda track: float(np.abs(np.diff(np.array(track[10:]), axis=0)).mean())  # noqa: E731
    assert shimmer(smooth) < 0.4 * shimmer(raw)


def test_one_euro_follows_fast_motion_with_little_lag() -> None:
    """A point moving at 1.5 face widths per second is followed within a few percent."""
    flt = OneEuroFilter(OneEuroParams())
    truth = [np.array([1.5 * i / 30, 0.0]) for i in range(60)]
    out = [flt(p, i / 30) for i, p in enumerate(truth)]
    lag = np.abs(np.array(out[20:]) - np.array(truth[20:]))[:, 0].mean()
    assert lag < 0.05  # of a face width
    still = OneEuroFilter(OneEuroParams())
    noise = np.random.default_rng(0).normal(0, 0.01, (60, 2))
    smoothed = np.array([still(n, i / 30) for i, n in enumerate(noise)])
    assert smoothed[10:].std() < 0.5 * noise[10:].std()


def test_head_pose_of_a_frontal_synthetic_mesh(analyzer, astronaut: Path) -> None:
    """Rotating a real mesh by a known yaw in 3D changes the estimate by that yaw."""
    lm = analyzer.analyze(read_image(astronaut))[0].landmarks.astype(np.float64)
    base = head_pose(lm)
    center = lm.mean(axis=0)
    angle = np.radians(20)
    rot = np.array(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    turned = (lm - center) @ rot.T + center
    assert abs(abs(head_pose(turned).yaw - base.yaw) - 20) < 3
