"""The service through its API: real worker processes, a real SQLite store, real media.

One server (two worker processes) is shared by the module; tests that need other settings
build their own app without workers.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.bombs import bomb_png, peak_rss_mb, reset_peak_rss
from vfxmocap.api.app import create_app
from vfxmocap.api.errors import public_text
from vfxmocap.api.security import RateLimiter, check_bind
from vfxmocap.core.config import Settings, reload_settings
from vfxmocap.core.errors import InvalidParams
from vfxmocap.jobs.service import JobService
from vfxmocap.media.image import decode_image, encode_image, read_image
from vfxmocap.media.video import VideoReader, probe
from vfxmocap.samples import sample_path

PLUGIN = json.dumps(["tests.plugin_workflows"])
WS = "ws://127.0.0.1:8420"  # the TestClient names "testserver" unless told


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The embedded default: the app starts two spawned workers; the plugin adds `sleep`."""
    os.environ["VFX_WORKFLOW_MODULES"] = PLUGIN
    reload_settings()
    data = tmp_path_factory.mktemp("server")
    service = JobService(Settings(data_dir=data, workers=2, cancel_grace_s=1.0))
    try:
        with TestClient(create_app(service), base_url="http://127.0.0.1:8420") as client:
            yield client
    finally:
        del os.environ["VFX_WORKFLOW_MODULES"]
        reload_settings()


def upload(client: TestClient, path: Path, name: str | None = None) -> str:
    response = client.post("/api/uploads", files={"file": (name or path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    upload_id: str = response.json()["id"]
    return upload_id


def submit(client: TestClient, workflow: str, **inputs: Any) -> str:
    response = client.post("/api/jobs", json={"workflow": workflow, "inputs": inputs})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait(client: TestClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def wait_state(client: TestClient, job_id: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/api/jobs/{job_id}").json()["state"] != state:
        assert time.monotonic() < deadline, f"job {job_id} never became {state}"
        time.sleep(0.02)


# --- jobs end to end -----------------------------------------------------------------------


def test_face_swap_job_end_to_end(server: TestClient, tmp_path: Path) -> None:
    source = upload(server, sample_path("astronaut"))
    target = upload(server, sample_path("carphone"))
    job_id = submit(server, "swap", sources=[source], target=target)
    job = wait(server, job_id)
    assert job["state"] == "succeeded", job
    assert job["outputs"] == ["output"] and job["summary"]["faces_swapped"] == 120
    assert job["progress"]["percent"] == 100.0 and job["backend"] == "local"
    response = server.get(f"/api/jobs/{job_id}/outputs/output")
    assert response.status_code == 200
    (tmp_path / "out.mp4").write_bytes(response.content)
    assert probe(tmp_path / "out.mp4").frame_count == 120


def test_mocap_job_end_to_end(server: TestClient) -> None:
    video = upload(server, sample_path("bikes"))
    job = wait(
        server, submit(server, "mocap", input=video, bvh=True, pose_video=True, merge_takes=True)
    )
    assert job["state"] == "succeeded", job
    assert set(job["outputs"]) == {"bvh", "json", "pose_video", "takes"}
    bvh = server.get(f"/api/jobs/{job['id']}/outputs/bvh").text
    assert bvh.startswith("HIERARCHY") and "Frames: 250" in bvh


def test_outputs_support_range_requests(server: TestClient) -> None:
    video = upload(server, sample_path("carphone"))
    job = wait(server, submit(server, "transcode", input=video, max_height=72))
    whole = server.get(f"/api/jobs/{job['id']}/outputs/video")
    part = server.get(f"/api/jobs/{job['id']}/outputs/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    url = f"/api/jobs/{job['id']}/outputs/video"
    for header, status in [("bytes=abc", 400), ("items=1-2", 400), ("bytes=99999999-", 416)]:
        refused = server.get(url, headers={"Range": header})
        assert refused.status_code == status and refused.json()["error"]["hint"], header
    assert refused.headers["content-range"] == f"bytes */{len(whole.content)}"


def test_progress_and_log_are_readable_over_http(server: TestClient) -> None:
    job_id = submit(server, "sleep", seconds=3)
    wait_state(server, job_id, "running")
    deadline = time.monotonic() + 30  # a worker process still starting has not begun yet
    while not (running := server.get(f"/api/jobs/{job_id}").json())["percent"]:
        assert time.monotonic() < deadline, running
        time.sleep(0.05)
    assert running["progress"]["stage"] == "sleep" and 0 < running["percent"] < 100
    assert running["eta_s"] is not None
    assert wait(server, job_id)["state"] == "succeeded"
    log = server.get(f"/api/jobs/{job_id}/log").text
    assert f"job {job_id}: sleep started" in log and "succeeded" in log


def test_events_over_websocket(server: TestClient) -> None:
    job_id = submit(server, "sleep", seconds=0.5)
    with server.websocket_connect(f"{WS}/api/ws?job_id={job_id}") as ws:
        kinds = []
        while not kinds or kinds[-1] not in ("succeeded", "failed"):
            event = ws.receive_json()
            assert event["job_id"] == job_id
            kinds.append(event["type"])
    assert kinds[0] == "status" and kinds[-1] == "succeeded" and "progress" in kinds
    with server.websocket_connect(f"{WS}/api/ws?job_id={job_id}") as ws:  # ended: state, close
        assert ws.receive_json()["state"] == "succeeded"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    progress = [k for k in kinds if k == "progress"]
    assert len(progress) >= 2


def test_previews_arrive_over_websocket(server: TestClient) -> None:
    """A running job sends a small JPEG of its current result now and then."""
    video = upload(server, sample_path("carphone"))
    job_id = submit(
        server, "swap", sources=[upload(server, sample_path("astronaut"))], target=video
    )
    previews = []
    with server.websocket_connect(f"{WS}/api/ws?job_id={job_id}") as ws:
        while (event := ws.receive_json())["type"] not in ("succeeded", "failed"):
            if event["type"] == "preview":
                previews.append(event)
    assert event["type"] == "succeeded" and previews
    image = decode_image(base64.b64decode(previews[0]["image"]))
    assert image.shape == (144, 176, 3) and previews[0]["mime"] == "image/jpeg"
    assert previews[0]["stage"] == "frames" and previews[0]["max"] == 120
    assert "preview" not in json.dumps(server.get(f"/api/jobs/{job_id}").json()["progress"])


def test_history_filters_and_pages(server: TestClient) -> None:
    ids = [submit(server, "sleep") for _ in range(5)]
    for job_id in ids:
        wait(server, job_id)
    page = server.get("/api/jobs", params={"workflow": "sleep", "limit": 3}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:3]
    rest = server.get(
        "/api/jobs", params={"workflow": "sleep", "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [j["id"] for j in rest["jobs"]] == ids[::-1][3:5]
    assert server.get("/api/jobs", params={"state": "bogus"}).status_code == 422
    stats = server.get("/api/queue").json()
    assert stats["states"]["succeeded"] >= 5 and stats["workers"] == 2


# --- cancel, timeouts, retries, crashes ----------------------------------------------------


def test_cancel_a_queued_job(server: TestClient) -> None:
    blockers = [submit(server, "sleep", seconds=2) for _ in range(2)]  # both workers busy
    queued = submit(server, "sleep", seconds=1)
    assert server.get(f"/api/jobs/{queued}").json()["position"] is not None
    assert server.post(f"/api/jobs/{queued}/cancel").json()["state"] == "cancelled"
    for job_id in blockers:
        assert wait(server, job_id)["state"] == "succeeded"
    assert server.get(f"/api/jobs/{queued}").json()["state"] == "cancelled"


def test_cancel_a_running_job_stops_it_and_leaves_no_output(server: TestClient) -> None:
    video = upload(server, sample_path("bikes"))
    job_id = submit(
        server, "swap", sources=[upload(server, sample_path("astronaut"))], target=video
    )
    wait_state(server, job_id, "running")
    server.post(f"/api/jobs/{job_id}/cancel")
    job = wait(server, job_id, timeout=30)
    assert job["state"] == "cancelled" and job["outputs"] == []
    folder = Path(server.app.state.service.jobs_dir) / job_id  # type: ignore[attr-defined]
    assert not any(p.suffix == ".mp4" for p in folder.glob("*"))


def test_a_job_that_ignores_cancel_is_killed_after_the_grace_period(server: TestClient) -> None:
    job_id = submit(server, "sleep", seconds=30, ignore_cancel=True)
    wait_state(server, job_id, "running")
    started = time.monotonic()
    server.post(f"/api/jobs/{job_id}/cancel")
    assert wait(server, job_id, timeout=20)["state"] == "cancelled"
    assert time.monotonic() - started < 8  # grace 1 s + heartbeat 2 s, not 30 s
    assert wait(server, submit(server, "sleep"))["state"] == "succeeded"  # slot respawned


def test_time_limit(server: TestClient) -> None:
    response = server.post(
        "/api/jobs",
        json={
            "workflow": "sleep",
            "inputs": {"seconds": 20, "ignore_cancel": True},
            "timeout_s": 1,
        },
    )
    job = wait(server, response.json()["id"], timeout=30)
    assert job["state"] == "failed" and job["error"]["code"] == "timeout"


def test_input_errors_are_not_retried(server: TestClient) -> None:
    job = wait(server, submit(server, "sleep", fail="input"))
    assert job["state"] == "failed" and job["attempt"] == 1
    assert job["error"]["code"] == "input_error" and job["error"]["hint"]


def test_out_of_memory_is_retried_then_fails_with_reason(server: TestClient) -> None:
    job = wait(server, submit(server, "sleep", fail="memory"), timeout=60)
    assert job["state"] == "failed" and job["attempt"] == 3
    assert job["error"]["code"] == "insufficient_memory"


def test_a_crashed_worker_loses_no_job(server: TestClient) -> None:
    job = wait(server, submit(server, "sleep", fail="crash"), timeout=90)
    assert job["state"] == "failed" and job["attempt"] == 3
    assert job["error"]["code"] == "worker_unavailable"
    assert wait(server, submit(server, "sleep"))["state"] == "succeeded"


def test_retry_and_delete(server: TestClient) -> None:
    job_id = submit(server, "sleep", fail="input")
    wait(server, job_id)
    retried = server.post(f"/api/jobs/{job_id}/retry").json()
    assert retried["state"] in ("queued", "running") and retried["error"] is None
    final = wait(server, job_id)
    assert final["state"] == "failed" and final["attempt"] == 1  # a fresh count
    assert server.delete(f"/api/jobs/{job_id}").status_code == 204
    assert server.get(f"/api/jobs/{job_id}").status_code == 404
    done = wait(server, submit(server, "sleep"))
    assert server.post(f"/api/jobs/{done['id']}/retry").status_code == 409  # succeeded
    running = submit(server, "sleep", seconds=3)
    wait_state(server, running, "running")
    conflict = server.delete(f"/api/jobs/{running}")
    assert conflict.status_code == 409 and "cancel it" in conflict.json()["error"]["message"]
    server.post(f"/api/jobs/{running}/cancel")


def test_deleting_a_queued_job_ends_its_followers(tmp_path: Path) -> None:
    """A follower of a job that is deleted while queued hears it and the socket closes."""
    with _bare_app(tmp_path) as client:  # no runner started: the job stays queued
        job_id = submit(client, "probe", input=upload(client, sample_path("carphone")))
        with client.websocket_connect(f"{WS}/api/ws?job_id={job_id}") as ws:
            assert ws.receive_json()["state"] == "queued"
            assert client.delete(f"/api/jobs/{job_id}").status_code == 204
            assert ws.receive_json()["type"] == "deleted"
            with pytest.raises(WebSocketDisconnect):
                ws.receive_json()


# --- bad input and security ----------------------------------------------------------------


def test_upload_type_comes_from_the_content(server: TestClient, tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video at all")
    response = server.post("/api/uploads", files={"file": ("clip.mp4", fake.read_bytes())})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "input_error" and error["message"].startswith("clip.mp4:")
    assert str(tmp_path) not in response.text and "uploads" not in response.text
    png_named_jpg = server.post(
        "/api/uploads", files={"file": ("photo.mp4", sample_path("astronaut").read_bytes())}
    ).json()
    assert png_named_jpg["kind"] == "image" and png_named_jpg["suffix"] == ".png"
    empty = server.post("/api/uploads", files={"file": ("e.png", b"")})
    assert empty.status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%2F..%2Fetc%2Fpasswd",
        "0123456789abcdef0123456789abcdef",  # well formed, but no such upload
    ],
)
def test_client_input_never_becomes_a_path(server: TestClient, value: str) -> None:
    response = server.post("/api/jobs", json={"workflow": "probe", "inputs": {"input": value}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "input_error"


def test_output_fields_are_set_by_the_server(server: TestClient, tmp_path: Path) -> None:
    video = upload(server, sample_path("carphone"))
    escape = tmp_path / "escaped.mp4"
    job = wait(server, submit(server, "transcode", input=video, output=str(escape), max_height=72))
    assert job["state"] == "succeeded" and not escape.exists()


def test_output_names_cannot_escape_the_job_folder(server: TestClient) -> None:
    job = wait(server, submit(server, "sleep"))
    for name in ("../../jobs.sqlite3", "..%2F..%2Fjobs.sqlite3", "/etc/passwd"):
        assert server.get(f"/api/jobs/{job['id']}/outputs/{name}").status_code == 404
    assert server.get("/api/jobs/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_a_symlinked_output_is_not_served(server: TestClient) -> None:
    service: JobService = server.app.state.service  # type: ignore[attr-defined]
    job = wait(server, submit(server, "sleep"))
    link = service.jobs_dir / job["id"] / "evil.txt"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/etc/passwd")
    service.store._update(job["id"], only=None, outputs=json.dumps({"evil": str(link)}))
    assert server.get(f"/api/jobs/{job['id']}/outputs/evil").status_code == 404


def test_validation_errors_are_422_with_fields(server: TestClient) -> None:
    response = server.post("/api/jobs", json={"workflow": "transcode", "inputs": {"max_height": 3}})
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["error"]["fields"]}
    assert {"inputs.input", "inputs.max_height"} <= fields
    unknown = server.post("/api/jobs", json={"workflow": "nope", "inputs": {}})
    assert unknown.status_code == 422 and "Known workflows" in unknown.json()["error"]["hint"]


def test_errors_name_the_clients_file_not_a_server_path(server: TestClient) -> None:
    video = upload(server, sample_path("carphone"), name="my clip.mp4")
    job = wait(server, submit(server, "swap", sources=[video], target=video))  # not a face
    data_dir = str(server.app.state.service.settings.data_dir)  # type: ignore[attr-defined]
    assert job["error"]["message"] == "my clip.mp4: not an image that can be decoded"
    with server.websocket_connect(f"{WS}/api/stream/swap") as ws:
        ws.send_text(json.dumps({"sources": [video]}))
        refused = ws.receive_json()
    assert refused["message"] == "my clip.mp4: not an image that can be decoded"
    service = server.app.state.service  # type: ignore[attr-defined]
    in_job = f"{service.jobs_dir}/{'0' * 32}/swapped.mp4: cannot write"
    assert public_text(service, in_job) == "swapped.mp4: cannot write"
    assert data_dir not in str(job) + str(refused)


def test_workflows_models_system(server: TestClient) -> None:
    flows = {w["name"]: w for w in server.get("/api/workflows").json()}
    assert {"swap", "mocap", "transcode", "probe", "sleep"} <= set(flows)
    assert flows["swap"]["files"] == ["sources", "target", "references"]
    assert "target" in flows["swap"]["inputs"]["properties"]
    assert flows["mocap"]["live"]["name"] == "pose" and flows["transcode"]["live"] is None
    assert flows["stamp"]["live"]["files"] == ["image"]
    assert flows["stamp"]["live"]["frames"] == flows["swap"]["live"]["frames"] == "target"
    assert "sources" in flows["swap"]["live"]["settings"]["properties"]
    models = {m["name"]: m for m in server.get("/api/models").json()}
    assert models["mediapipe-pose"]["ready"] and not models["inswapper-128"]["ready"]
    req = server.get("/api/models/inswapper-128/requirements").json()
    assert req["missing_files"] and req["memory_fits"]
    assert server.get("/api/models/nope/requirements").status_code == 404
    system = server.get("/api/system").json()
    assert system["device"]["kind"] == "cpu" and system["expected_fps"]["fps"]["swap"] > 0
    assert server.get("/api/healthz").json() == {"status": "ok"}
    assert server.get("/api/readyz").json()["ready"] is True
    assert server.get("/api/openapi.json").json()["info"]["title"] == "vfxmocap"


def _bare_app(tmp_path: Path, **settings: Any) -> TestClient:
    service = JobService(Settings(data_dir=tmp_path, **settings))
    return TestClient(create_app(service, start=False), base_url="http://127.0.0.1:8420")


def test_token_guards_every_route_and_websocket(tmp_path: Path) -> None:
    with _bare_app(tmp_path, api_token="s3cret") as client:
        assert client.get("/api/healthz").status_code == 401
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/openapi.json").status_code == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/healthz", headers=bearer).status_code == 200
        assert (
            client.get("/api/healthz", headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(f"{WS}/api/ws") as ws:
            ws.receive_json()
        with client.websocket_connect(f"{WS}/api/ws?token=s3cret"):
            pass  # accepted


def test_cors_is_off_by_default_and_an_allowlist_when_set(tmp_path: Path) -> None:
    origin = {"Origin": "https://evil.example"}
    with _bare_app(tmp_path / "a") as client:
        refused = client.get("/api/healthz", headers=origin)
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    with _bare_app(tmp_path / "b", cors_origins=["https://studio.example"]) as client:
        ok = client.get("/api/healthz", headers={"Origin": "https://studio.example"})
        assert ok.headers["access-control-allow-origin"] == "https://studio.example"
        assert (
            "access-control-allow-origin" not in client.get("/api/healthz", headers=origin).headers
        )


def test_without_a_token_only_local_clients_are_served(tmp_path: Path) -> None:
    """DNS rebinding (a foreign Host) and other sites' pages (a foreign Origin) are refused;
    this machine's own clients and pages are served."""
    with _bare_app(tmp_path) as client:
        assert client.get("/api/healthz", headers={"Host": "evil.example"}).status_code == 403
        page = client.get("/api/jobs", headers={"Origin": "http://evil.example"})
        assert page.status_code == 403 and "VFX_CORS_ORIGINS" in page.json()["error"]["message"]
        local = client.get("/api/healthz", headers={"Origin": "http://localhost:3000"})
        assert local.status_code == 200
        assert client.get("/api/healthz", headers={"Host": "[::1]:8420"}).status_code == 200
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(
                f"{WS}/api/ws", headers={"Origin": "https://evil.example"}
            ) as ws,
        ):
            ws.receive_json()
    with _bare_app(tmp_path / "t", api_token="s3cret") as client:  # the token decides
        headers = {"Host": "studio.example", "Authorization": "Bearer s3cret"}
        assert client.get("/api/healthz", headers=headers).status_code == 200


def test_rate_limit_answers_429(tmp_path: Path) -> None:
    with _bare_app(tmp_path, rate_limit_per_s=1, rate_burst=3) as client:
        codes = [client.get("/api/healthz").status_code for _ in range(5)]
    assert codes[:3] == [200] * 3 and codes[3:] == [429, 429]
    limiter = RateLimiter(rate=1000, burst=1)
    assert limiter.allow("a")[0] and limiter.allow("b")[0]  # per client


def test_an_upload_declaring_too_many_pixels_is_refused(tmp_path: Path) -> None:
    """169 MP in a 160 kB PNG: 413 from its header (a job would decode 507 MB)."""
    with _bare_app(tmp_path) as client:
        response = client.post("/api/uploads", files={"file": ("b.png", bomb_png(13000, 13000))})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "input_error" and error["message"].startswith("b.png: 13000x13000")
    assert "VFX_IMAGE_MAX_PIXELS" in error["hint"] and str(tmp_path) not in response.text
    assert not [p for p in (tmp_path / "uploads").iterdir()]


def test_upload_size_limit(tmp_path: Path) -> None:
    with _bare_app(tmp_path, upload_max_mb=0.1) as client:
        data = sample_path("astronaut").read_bytes()  # 790 kB
        response = client.post("/api/uploads", files={"file": ("a.png", data)})
        assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]

        def chunks():  # type: ignore[no-untyped-def]
            yield b"--x\r\n"  # chunked: no size declared up front

        chunked = client.post(
            "/api/uploads",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert chunked.status_code == 411
    assert not [p for p in (tmp_path / "uploads").iterdir()]


def test_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(InvalidParams, match="without an API token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "token")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)


# --- live streams --------------------------------------------------------------------------


def _jpeg_frames(count: int) -> list[bytes]:
    frames = [f for _, f in zip(range(count), VideoReader(sample_path("carphone")), strict=False)]
    return [encode_image(f, ".jpg", quality=85) for f in frames]


def test_live_pose_stream(server: TestClient) -> None:
    frames = _jpeg_frames(20)
    with server.websocket_connect(f"{WS}/api/stream/pose") as ws:
        ws.send_json({"draw": "control"})
        assert ws.receive_json()["type"] == "ready"
        outputs = []
        for data in frames:
            ws.send_bytes(data)
            message = ws.receive()
            while "text" in message and message["text"] is not None:
                message = ws.receive()  # stats
            outputs.append(decode_image(message["bytes"]))
    assert len(outputs) == 20 and outputs[0].shape == (144, 176, 3)
    assert max(int(o.max()) for o in outputs) > 0  # a skeleton was drawn on black


def test_live_swap_stream_drops_stale_frames(server: TestClient) -> None:
    source = upload(server, sample_path("astronaut"))
    frames = _jpeg_frames(60)
    with server.websocket_connect(f"{WS}/api/stream/swap") as ws:
        ws.send_json({"sources": [source]})
        assert ws.receive_json()["type"] == "ready"
        for data in frames:  # as fast as possible, without reading
            ws.send_bytes(data)
        received, stats = 0, None
        while stats is None or stats["received"] < 60:
            message = ws.receive()
            if message.get("bytes") is not None:
                received += 1
            elif message.get("text") is not None:
                stats = json.loads(message["text"])
    assert stats["dropped"] > 0 and stats["frames"] + stats["dropped"] <= 60
    assert received >= 1


def test_stream_rejects_bad_settings(server: TestClient) -> None:
    with server.websocket_connect(f"{WS}/api/stream/swap") as ws:
        ws.send_json({"sources": ["../../etc/passwd"]})
        assert ws.receive_json()["type"] == "error"
    with server.websocket_connect(f"{WS}/api/stream/pose") as ws:
        ws.send_json(["not", "an", "object"])
        assert ws.receive_json()["type"] == "error"
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        server.websocket_connect(f"{WS}/api/stream/nope") as ws,
    ):
        ws.receive_json()
    assert "swap" in closed.value.reason and "stamp" in closed.value.reason  # what there is


def _pose_stream_ready(ws: Any) -> None:
    ws.send_json({"draw": "control"})
    assert ws.receive_json()["type"] == "ready"


def _next_text(ws: Any) -> dict[str, Any]:
    while (message := ws.receive_json())["type"] == "stats":
        pass
    return message  # type: ignore[no-any-return]


def test_a_bomb_frame_gets_an_error_not_a_decode(tmp_path: Path) -> None:
    """A 160 kB PNG declaring 13000x13000 (507 MB as RGB) is refused from its header; the
    stream goes on."""
    with _bare_app(tmp_path) as client, client.websocket_connect(f"{WS}/api/stream/pose") as ws:
        _pose_stream_ready(ws)
        reset_peak_rss()
        before = peak_rss_mb()
        ws.send_bytes(bomb_png(13000, 13000))
        error = _next_text(ws)
        grown = peak_rss_mb() - before
        ws.send_bytes(_jpeg_frames(1)[0])
        while ws.receive().get("bytes") is None:
            pass  # stats, until the frame comes back
    assert error["type"] == "error" and "13000x13000" in error["message"]
    assert grown < 100, f"server memory grew {grown:.0f} MB"


def _refused(client: TestClient) -> tuple[str, int]:
    with client.websocket_connect(f"{WS}/api/stream/pose") as ws:
        message = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert message["type"] == "error"
    return message["message"], closed.value.code


def test_streams_are_capped_per_client_and_in_all(tmp_path: Path) -> None:
    """Beyond the caps a stream is closed with 1013 (try again later); a closed stream's
    slot is free again."""
    url = f"{WS}/api/stream/pose"
    with _bare_app(tmp_path, stream_max_per_client=2, stream_max_total=3) as client:
        other = TestClient(client.app, base_url="http://127.0.0.1:8420", client=("10.0.0.2", 1))
        with client.websocket_connect(url), client.websocket_connect(url) as second:
            _pose_stream_ready(second)
            message, code = _refused(client)
            assert code == 1013 and "limit of 2" in message
            with other.websocket_connect(url):  # another client still gets one
                message, code = _refused(other)
                assert code == 1013 and "limit of 3" in message
        with client.websocket_connect(url) as ws:
            _pose_stream_ready(ws)


def test_streams_are_capped_per_ipv6_slash_64(tmp_path: Path) -> None:
    """Two addresses of one IPv6 /64 are one client to the stream cap; another /64 is not."""
    url = f"{WS}/api/stream/pose"

    def peer(client: TestClient, host: str) -> TestClient:
        return TestClient(client.app, base_url="http://127.0.0.1:8420", client=(host, 1))

    with (
        _bare_app(tmp_path, stream_max_per_client=1) as client,
        peer(client, "2001:db8::1").websocket_connect(url) as first,
    ):
        _pose_stream_ready(first)
        message, code = _refused(peer(client, "2001:db8::2"))
        assert code == 1013 and "limit of 1" in message
        with peer(client, "2001:db8:0:1::1").websocket_connect(url) as other:
            _pose_stream_ready(other)


@pytest.mark.parametrize("stream", ["swap", "pose", "mocap", "stamp"])
def test_every_live_workflow_streams_through_the_registry(server: TestClient, stream: str) -> None:
    """Built-in and plugin workflows alike: settings (upload ids for files), then frames."""
    image = upload(server, sample_path("astronaut"))
    settings = {
        "swap": {"sources": [image], "options": {"faces": "largest"}},
        "pose": {"draw": "control"},
        "mocap": {},  # the pose stream, by its workflow's name
        "stamp": {"image": image, "size": 16},
    }[stream]
    frames = _jpeg_frames(3)
    with server.websocket_connect(f"{WS}/api/stream/{stream}") as ws:
        ws.send_json(settings)
        assert ws.receive_json() == {"type": "ready", "stream": stream}
        outputs = []
        for data in frames:
            ws.send_bytes(data)
            message = ws.receive()
            while message.get("text") is not None:
                message = ws.receive()  # stats
            outputs.append(decode_image(message["bytes"]))
    assert [o.shape for o in outputs] == [(144, 176, 3)] * 3
    if stream == "stamp":  # the plugin's processor ran, with the upload as its file
        corner = cv2.resize(read_image(sample_path("astronaut")), (16, 16))
        assert np.abs(outputs[0][:16, :16].astype(int) - corner).mean() < 12


def test_astronaut_swap_output_changes_the_face(server: TestClient, tmp_path: Path) -> None:
    """An image target gives an image output (PNG) that differs from the target."""
    source = upload(server, sample_path("astronaut"))
    target = upload(server, sample_path("t1"))
    job = wait(server, submit(server, "swap", sources=[source], target=target))
    assert job["state"] == "succeeded", job
    data = server.get(f"/api/jobs/{job['id']}/outputs/output").content
    out = decode_image(data)
    original = read_image(sample_path("t1"))
    assert out.shape == original.shape
    assert np.abs(out.astype(int) - original).mean() > 0.5


def test_retention_removes_old_finished_jobs_and_their_files(tmp_path: Path) -> None:
    service = JobService(Settings(data_dir=tmp_path, job_retention_days=1))
    old = service.store.submit("sleep", {})
    recent = service.store.submit("sleep", {})
    waiting = service.store.submit("sleep", {})
    for job in (old, recent):
        service.store.claim("w", limit=10)
        service.store.succeed(job.id, {}, {})
        (service.jobs_dir / job.id).mkdir()
        (service.jobs_dir / job.id / "out.mp4").write_bytes(b"x")
    service.store._update(old.id, only=None, finished_at=time.time() - 2 * 86400)
    assert service.cleanup() == 1
    assert service.store.get(old.id) is None and not (service.jobs_dir / old.id).exists()
    assert service.store.get(recent.id) is not None and (service.jobs_dir / recent.id).exists()
    assert service.store.get(waiting.id) is not None  # queued jobs are never removed
    part_id, part = service.uploads.new_part()
    part.write_bytes(sample_path("astronaut").read_bytes())
    service.uploads.commit(part_id, part, "a.png")
    stale = service.uploads.root / f"{part_id}.json"
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    fresh_id, fresh = service.uploads.new_part()
    fresh.write_bytes(sample_path("astronaut").read_bytes())
    service.uploads.commit(fresh_id, fresh, "b.png")
    service.cleanup()
    assert not list(service.uploads.root.glob(f"{part_id}*"))
    assert service.uploads.path(fresh_id).is_file()
    service.store.dispose()


def test_an_unreachable_broker_is_a_503_and_jobs_fall_back(tmp_path: Path) -> None:
    with _bare_app(tmp_path, broker_url="redis://127.0.0.1:9/0") as client:
        response = client.get("/api/workers")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "worker_unavailable"
        job = client.post(
            "/api/jobs",
            json={
                "workflow": "probe",
                "inputs": {"input": upload(client, sample_path("astronaut"))},
            },
        )
        assert job.status_code == 202
        route = client.get(f"/api/jobs/{job.json()['id']}").json()["route"]
        assert route == "no Celery worker can run probe; local workers (cpu)"


def test_a_job_shows_its_inputs_as_sent_and_can_be_run_again(server: TestClient) -> None:
    """The studio shows a job's settings and re-runs it: upload ids, never server paths,
    and no outputs (a re-run gets its own folder)."""
    clip = upload(server, sample_path("carphone"))
    job_id = submit(server, "transcode", input=clip, max_height=72)
    view = server.get(f"/api/jobs/{job_id}").json()
    assert view["inputs"]["input"] == clip and view["inputs"]["max_height"] == 72
    assert "output" not in view["inputs"]
    assert "uploads" not in json.dumps(view) and "jobs" not in json.dumps(view["inputs"])
    again = submit(server, "transcode", **view["inputs"])
    first, second = wait(server, job_id), wait(server, again)
    assert first["state"] == second["state"] == "succeeded", (first, second)


def test_a_random_authorization_header_does_not_escape_the_rate_limit(tmp_path: Path) -> None:
    with _bare_app(tmp_path, rate_limit_per_s=1, rate_burst=3) as client:
        codes = [
            client.get("/api/healthz", headers={"Authorization": f"Bearer x{i}"}).status_code
            for i in range(5)
        ]
    assert codes == [200, 200, 200, 429, 429]


def test_wrong_tokens_are_throttled_and_the_right_one_still_passes(tmp_path: Path) -> None:
    """Ten wrong guesses, then guesses get 429 whatever header or connection each uses; a
    client with the right token at the same address (behind one NAT) is not locked out,
    over HTTP and WebSocket alike."""
    with _bare_app(tmp_path, api_token="s3cret") as client:
        wrong = [
            client.get("/api/healthz", headers={"Authorization": f"Bearer guess{i}"}).status_code
            for i in range(12)
        ]
        right = client.get("/api/healthz", headers={"Authorization": "Bearer s3cret"})
        with client.websocket_connect(f"{WS}/api/ws?token=s3cret"):
            pass  # accepted: a refusal closes before the connection opens
        guess = client.get("/api/healthz", headers={"Authorization": "Bearer guess"})
    assert wrong[:10] == [401] * 10 and wrong[10:] == [429, 429]
    assert right.status_code == 200 and guess.status_code == 429
    assert "failed authentications" in guess.text


def test_failed_tokens_count_per_ipv6_slash_64(tmp_path: Path) -> None:
    """An IPv6 host has a /64 of addresses: failures from any of them share one count."""
    with _bare_app(tmp_path, api_token="s3cret") as client:

        def guess(host: str) -> int:
            peer = TestClient(client.app, base_url="http://[2001:db8::1]:8420", client=(host, 1))
            return peer.get("/api/healthz", headers={"Authorization": "Bearer x"}).status_code

        first = [guess(f"2001:db8::{i + 1:x}") for i in range(10)]
        same_block, other_block = guess("2001:db8::ffff"), guess("2001:db8:0:1::1")
    assert first == [401] * 10 and (same_block, other_block) == (429, 401)


def test_local_clients_each_get_a_bucket_and_remote_ones_share_their_address() -> None:
    from vfxmocap.api.security import client_key

    def key(host: str, port: int) -> str:
        return client_key({"type": "http", "client": (host, port)})

    assert key("127.0.0.1", 50001) != key("127.0.0.1", 50002)  # the studio, the CLI, ...
    assert key("203.0.113.5", 1) == key("203.0.113.5", 2)
    assert key("2001:db8::1", 1) == key("2001:db8::ffff", 2)  # one /64: one host


@pytest.mark.parametrize(
    ("misuse", "code", "says"),
    [
        ("binary first", 1003, "JSON text message first"),
        ("not json", 1007, "not JSON"),
        ("text frame", 1003, "must be binary"),
    ],
)
def test_stream_protocol_misuse_gets_a_reason_and_a_close_code(
    server: TestClient, misuse: str, code: int, says: str
) -> None:
    with server.websocket_connect(f"{WS}/api/stream/pose") as ws:
        if misuse == "binary first":
            ws.send_bytes(_jpeg_frames(1)[0])
        elif misuse == "not json":
            ws.send_text("{draw: control")
        else:
            ws.send_json({"draw": "control"})
            assert ws.receive_json()["type"] == "ready"
            ws.send_text("a frame?")
        error = ws.receive_json()
        assert error["type"] == "error" and says in error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == code


def test_settings_that_never_come_end_the_stream_with_a_close_frame(
    server: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfxmocap.api import stream

    monkeypatch.setattr(stream, "SETTINGS_TIMEOUT_S", 0.2)
    with server.websocket_connect(f"{WS}/api/stream/pose") as ws:
        assert "within" in ws.receive_json()["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def test_binary_on_the_events_socket_is_refused_with_1003(server: TestClient) -> None:
    with server.websocket_connect(f"{WS}/api/ws") as ws:
        ws.send_bytes(b"\x00\x01")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1003


def test_a_json_body_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with _bare_app(tmp_path, body_max_kb=64) as client:
        big = {"workflow": "probe", "inputs": {"pad": "x" * 100_000}}
        refused = client.post("/api/jobs", json=big)
        assert refused.status_code == 413 and "VFX_BODY_MAX_KB" in refused.json()["error"]["hint"]

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"workflow": "probe"}'

        chunked = client.post(
            "/api/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 411


def test_every_refusal_has_the_one_error_shape(tmp_path: Path) -> None:
    with _bare_app(tmp_path) as client:
        unknown = client.get("/api/nope")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        wrong = client.put("/api/healthz")
        assert wrong.status_code == 405 and "error" in wrong.json()
        assert client.head("/api/healthz").status_code == 200
        json_body = {"content-type": "application/json"}
        for body in (b"{not json", b"[" * 50_000 + b"]" * 50_000):  # unparsable, too deep
            refused = client.post("/api/jobs", content=body, headers=json_body)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "input_error"
        image = sample_path("astronaut").read_bytes()
        long_name = client.post("/api/uploads", files={"file": ("a" * 300 + ".png", image)})
        assert long_name.status_code == 400 and "at most 255" in _message(long_name)
        parts = b'--x\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n' * 1001
        many = client.post(
            "/api/uploads",
            content=parts + b"--x--\r\n",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert many.status_code == 400 and "unexpected form field 'f'" in _message(many)


def _message(response: Any) -> str:
    message: str = response.json()["error"]["message"]
    return message


def test_error_messages_never_echo_unbounded_input() -> None:
    from vfxmocap.core.errors import MAX_MESSAGE, InvalidParams

    error = InvalidParams(f"bad faces {'9' * 50_000!r}")
    assert len(error.message) == MAX_MESSAGE and error.message.endswith("…")


def test_a_store_locked_by_another_process_does_not_freeze_the_api(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock for a while: a submit waits for it in a
    thread, and every other request (health, job views) answers meanwhile."""
    import sqlite3
    import threading

    with _bare_app(tmp_path) as client:
        database = tmp_path / "jobs.sqlite3"
        assert database.is_file()
        clip = upload(client, sample_path("carphone"))
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a busy worker process takes it
        submitted: list[int] = []
        poster = threading.Thread(
            target=lambda: submitted.append(
                client.post(
                    "/api/jobs", json={"workflow": "probe", "inputs": {"input": clip}}
                ).status_code
            )
        )
        poster.start()
        time.sleep(0.3)  # the submit is now waiting for the lock
        started = time.monotonic()
        assert client.get("/api/healthz").status_code == 200
        answered_in = time.monotonic() - started
        holder.execute("ROLLBACK")
        holder.close()
        poster.join(timeout=30)
    assert answered_in < 0.5, f"the event loop was blocked for {answered_in:.2f} s"
    assert submitted == [202]  # queued once the lock was free


def _data_url_image(url: str) -> np.ndarray:
    assert url.startswith("data:image/jpeg;base64,")
    return decode_image(base64.b64decode(url.split(",", 1)[1]))


def test_preview_swaps_one_chosen_frame_of_the_target(server: TestClient) -> None:
    source = upload(server, sample_path("astronaut"))
    target = upload(server, sample_path("carphone"))
    inputs = {"sources": [source], "target": target}
    response = server.post("/api/preview", json={"workflow": "swap", "inputs": inputs, "frame": 60})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["frame"], body["frames"]) == (60, 120)
    before, after = _data_url_image(body["before"]), _data_url_image(body["after"])
    frames = list(VideoReader(sample_path("carphone")))

    # The frame asked for, not the first: closer to frame 60 than to frame 0.
    def distance(frame: np.ndarray) -> float:
        return float(np.abs(before.astype(int) - frame).mean())

    assert distance(frames[60]) < distance(frames[0])
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 40
    assert 0.01 < changed.mean() < 0.5  # the face changed, not the whole frame
    # Past the end: the last frame.
    late = server.post("/api/preview", json={"workflow": "swap", "inputs": inputs, "frame": 999})
    assert late.json()["frame"] == 119


def test_preview_serves_a_plugins_processor_without_special_cases(server: TestClient) -> None:
    stamp, target = upload(server, sample_path("astronaut")), upload(server, sample_path("coffee"))
    inputs = {"image": stamp, "target": target, "size": 40}
    body = server.post("/api/preview", json={"workflow": "stamp", "inputs": inputs}).json()
    before, after = _data_url_image(body["before"]), _data_url_image(body["after"])
    assert body["frames"] == 1
    corner = np.abs(after[:40, :40].astype(int) - before[:40, :40].astype(int)).mean()
    rest = np.abs(after[60:, 60:].astype(int) - before[60:, 60:].astype(int)).mean()
    assert corner > 20 and rest < 3


def test_preview_refusals_are_typed(server: TestClient) -> None:
    none = server.post("/api/preview", json={"workflow": "sleep", "inputs": {}})
    assert none.status_code == 422 and "no frame preview" in none.json()["error"]["message"]
    target = upload(server, sample_path("carphone"))
    inputs = {"sources": [upload(server, sample_path("astronaut"))], "target": target}
    slow = server.post(
        "/api/preview",
        json={"workflow": "swap", "inputs": inputs, "frame": 119, "time_limit_s": 0.001},
    )
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"
    bad = server.post("/api/preview", json={"workflow": "swap", "inputs": {"target": target}})
    assert bad.status_code == 422


def test_the_studio_is_served_at_the_root(server: TestClient) -> None:
    page = server.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'type="importmap"' in page.text
    for asset in ("app.js", "vfxmocap.js", "vendor/preact.mjs", "vendor/htm.mjs"):
        response = server.get(f"/studio/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith("text/javascript")
    assert server.get("/studio/../app.py").status_code == 404
    assert server.get("/studio/%2e%2e/app.py").status_code == 404
    assert server.get("/api/nothing").json()["error"]["code"] == "not_found"


def test_the_studio_needs_no_token_but_the_api_does(tmp_path: Path) -> None:
    service = JobService(Settings(data_dir=tmp_path, workers=1, api_token="s3cret-token"))
    with TestClient(create_app(service, start=False), base_url="http://127.0.0.1:8420") as client:
        assert client.get("/").status_code == 200
        assert client.get("/studio/app.js").status_code == 200
        assert client.get("/api/system").status_code == 401
        headers = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/system", headers=headers).status_code == 200


def test_the_backend_can_be_chosen_and_the_route_is_shown(server: TestClient) -> None:
    assert server.get("/api/system").json()["backends"] == ["local"]
    chosen = server.post("/api/jobs", json={"workflow": "sleep", "backend": "local"})
    assert chosen.status_code == 202, chosen.text
    assert chosen.json()["backend"] == "local" and "local workers" in chosen.json()["route"]
    done = wait(server, chosen.json()["id"])  # GET /api/jobs/{id}: stored with the job
    assert (done["backend"], done["route"]) == ("local", chosen.json()["route"])
    auto = server.post("/api/jobs", json={"workflow": "sleep"}).json()  # auto: the order's first
    assert auto["backend"] == "local"
    assert server.get(f"/api/jobs/{auto['id']}").json()["route"] == auto["route"]
    absent = server.post("/api/jobs", json={"workflow": "sleep", "backend": "celery"})
    assert absent.status_code == 503
    error = absent.json()["error"]
    assert (
        error["code"] == "worker_unavailable"
        and "celery backend is not configured" in error["message"]
    )
    assert error["hint"] == "Choose auto or one of: local."
    unknown = server.post("/api/jobs", json={"workflow": "sleep", "backend": "gpu-farm"})
    assert unknown.status_code == 422


def test_an_upload_is_served_back_by_its_id(server: TestClient) -> None:
    data = sample_path("carphone").read_bytes()
    upload_id = upload(server, sample_path("carphone"), "my clip.mp4")
    whole = server.get(f"/api/uploads/{upload_id}")
    assert whole.status_code == 200 and whole.content == data
    assert (
        whole.headers["content-type"] == "video/mp4"
        and "my%20clip.mp4" in whole.headers["content-disposition"]
    )
    part = server.get(f"/api/uploads/{upload_id}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    for bad in ("0123456789abcdef0123456789abcdef", "..%2F..%2Fetc%2Fpasswd", "nothing"):
        missing = server.get(f"/api/uploads/{bad}")
        assert missing.status_code == 404 and missing.json()["error"]["hint"]


def test_preview_of_mocap_draws_the_skeleton_on_the_frame(server: TestClient) -> None:
    video = upload(server, sample_path("bikes"))
    inputs = {"input": video}
    body = server.post(
        "/api/preview", json={"workflow": "mocap", "inputs": inputs, "frame": 125}
    ).json()
    assert (body["frame"], body["frames"]) == (125, 250)
    before, after = _data_url_image(body["before"]), _data_url_image(body["after"])
    changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 60
    assert 0.001 < changed.mean() < 0.2  # lines over the cyclist, the rest untouched


def test_preview_of_animate_drives_the_portrait_from_the_neutral_frame(
    server: TestClient,
) -> None:
    portrait = read_image(sample_path("astronaut"))
    inputs = {
        "source": upload(server, sample_path("astronaut")),
        "driving": upload(server, sample_path("carphone")),
    }

    def preview(frame: int, **more: Any) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        body = {"workflow": "animate", "inputs": {**inputs, **more}, "frame": frame}
        response = server.post("/api/preview", json=body)
        assert response.status_code == 200, response.text
        shown = response.json()
        return shown, _data_url_image(shown["before"]), _data_url_image(shown["after"])

    body, before, still = preview(0)  # the neutral frame itself: the portrait as it is
    assert (body["frame"], body["frames"]) == (0, 120) and before.shape == (144, 176, 3)
    assert still.shape == portrait.shape
    assert np.abs(still.astype(int) - portrait).mean() < 6
    body, before, moved = preview(100)  # the driver's head has moved since frame 0
    frames = list(VideoReader(sample_path("carphone")))
    assert (
        np.abs(before.astype(int) - frames[100]).mean()
        < np.abs(before.astype(int) - frames[0]).mean()
    )
    changed = np.abs(moved.astype(int) - still).max(axis=2) > 30
    assert 0.005 < changed.mean() < 0.5  # the face moved, not the whole picture
    # With that frame as the neutral pose, the same frame leaves the portrait as it is.
    _, _, other = preview(100, neutral=100)
    assert np.abs(other.astype(int) - portrait).mean() < 6


# --- model names over the API -------------------------------------------------------------


def _generate(client: TestClient, model: str) -> Any:
    return client.post(
        "/api/jobs", json={"workflow": "generate", "inputs": {"model": model, "prompt": "a cat"}}
    )


def test_a_job_names_model_folders_only_inside_the_models_folder(tmp_path: Path) -> None:
    """A client's model is a catalog name, a Hub repo id or a folder in the server's models
    folder. Any other path is refused from its spelling, in the same words whether it
    exists or not (no probing the server's disk), and the job shows `<models>/NAME`."""
    models = tmp_path / "models"
    (models / "my-wan").mkdir(parents=True)
    outside = ["/etc", "/no/such/folder", "../../etc", str(tmp_path / "uploads"), "<models>/..", ""]
    with _bare_app(tmp_path, models_dir=models) as client:
        refused = [_generate(client, model) for model in outside]
        by_name = _generate(client, "my-wan")
        by_path = _generate(client, str(models / "my-wan"))
        views = [client.get(f"/api/jobs/{r.json()['id']}").json() for r in (by_name, by_path)]
        again = _generate(client, views[0]["inputs"]["model"])  # a job's inputs, sent again
        hub = _generate(client, "src/vfxmocap")  # a repo id, even where such a folder exists
        hub_view = client.get(f"/api/jobs/{hub.json()['id']}").json()
        stored = client.app.state.service.store.get(hub.json()["id"]).inputs["model"]
    assert [r.status_code for r in refused] == [422] * len(outside)
    words = {_message(r).replace(repr(m), "M") for r, m in zip(refused, outside, strict=True)}
    assert len(words) == 1 and str(models) not in json.dumps([r.json() for r in refused])
    assert by_name.status_code == by_path.status_code == 202
    assert [v["inputs"]["model"] for v in views] == ["<models>/my-wan"] * 2
    assert str(tmp_path) not in json.dumps(views)
    assert again.status_code == 202
    assert stored == "hf:src/vfxmocap" and hub_view["inputs"]["model"] == "src/vfxmocap"


def test_requirements_that_read_files_are_checked_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`generate`'s needs come from the model's files (its weights): a submit checks them in
    a thread, so a big model folder never stalls the other requests."""
    import asyncio
    import dataclasses

    from vfxmocap.workflows import get_workflow, registry

    flow = get_workflow("generate")
    assert flow.requires is not None
    where: list[str] = []

    def requires(inputs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("thread")
        assert flow.requires is not None
        return flow.requires(inputs)

    monkeypatch.setitem(
        registry._REGISTRY, "generate", dataclasses.replace(flow, requires=requires)
    )
    with _bare_app(tmp_path, models_dir=tmp_path / "models") as client:
        assert _generate(client, "wan2.1-t2v-1.3b").status_code == 202
    assert where == ["thread"]


def test_a_body_framed_two_ways_is_refused(tmp_path: Path) -> None:
    """Content-Length with Transfer-Encoding (or two Content-Lengths) is how requests are
    smuggled past a proxy that reads the framing differently: 400, the body unread."""
    body = json.dumps({"workflow": "probe", "inputs": {}}).encode()
    both = [("content-length", str(len(body))), ("transfer-encoding", "chunked")]
    with _bare_app(tmp_path) as client:
        answers = [
            client.post("/api/jobs", content=body, headers=both),
            client.post(
                "/api/jobs",
                content=body,
                headers=[("content-length", str(len(body))), ("content-length", "5")],
            ),
        ]
        plain = client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "size twice" in _message(answer)
    assert plain.status_code != 400  # one framing: the request goes on to its route


def test_readiness_names_the_models_folder_only_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What to place where: `<models>/NAME` over the API (no server path), the full path
    for `vfx doctor` on the machine itself."""
    import dataclasses

    from vfxmocap.device import resolve_device
    from vfxmocap.models.store import ModelStore
    from vfxmocap.workflows import get_workflow, registry
    from vfxmocap.workflows.readiness import readiness

    swap = get_workflow("swap")
    neural = dataclasses.replace(
        swap, resources=dataclasses.replace(swap.resources, models=("inswapper-128",))
    )
    monkeypatch.setitem(registry._REGISTRY, "swap", neural)
    models = tmp_path / "models"
    with _bare_app(tmp_path, models_dir=models) as client:
        listed = {w["name"]: w for w in client.get("/api/workflows").json()}
    fixes = [gap["fix"] for gap in listed["swap"]["here"]["missing"] if gap["kind"] == "model"]
    place = "place its files in <models>/inswapper-128"
    assert fixes == [f"vfx models pull inswapper-128 (offline: {place})"]
    assert str(tmp_path) not in json.dumps(listed)
    local = readiness(neural, resolve_device("cpu"), ModelStore(models))
    assert str(models / "inswapper-128") in local["missing"][0]["fix"]


def test_an_upload_is_streamed_to_disk_once_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real clip (bikes): parsed and written in threads as it arrives, never spooled to
    a temporary file first; the stored upload is the bytes sent. A body that is not one
    whole file part is refused and leaves nothing behind."""
    import asyncio

    import starlette.formparsers
    from python_multipart.multipart import MultipartParser

    spooled: list[object] = []
    monkeypatch.setattr(
        starlette.formparsers, "SpooledTemporaryFile", lambda *a, **k: spooled.append(a)
    )
    where: list[str] = []
    write = MultipartParser.write

    def watched(self: Any, data: bytes) -> int:
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("thread")
        return write(self, data)

    monkeypatch.setattr(MultipartParser, "write", watched)
    clip = sample_path("bikes").read_bytes()
    form = {"content-type": "multipart/form-data; boundary=x"}
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="b.mp4"\r\n\r\n'
    with _bare_app(tmp_path) as client:
        stored = client.post("/api/uploads", files={"file": ("bikes.mp4", clip)}).json()
        cut = client.post("/api/uploads", content=head + clip[:1000], headers=form)
        two = client.post(
            "/api/uploads", content=(head + b"ab\r\n") * 2 + b"--x--\r\n", headers=form
        )
    kept = tmp_path / "uploads" / f"{stored['id']}.mp4"
    assert kept.read_bytes() == clip and stored["filename"] == "bikes.mp4"
    assert spooled == [] and len(where) >= 3 and set(where) == {"thread"}
    assert cut.status_code == 400 and "closing boundary" in _message(cut)
    assert two.status_code == 400 and "more than one file" in _message(two)
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == sorted(
        [kept.name, f"{stored['id']}.json"]
    )
