"""The web studio in real Chromium (Debian's, driven by Playwright) against a real `vfx serve`,
and the JavaScript client under Node's test runner against another (token-protected) one."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ALLOW_SKIP, require
from tests.servers import ROOT, ServerProcess
from vfxmocap.samples import sample_path

CHROMIUM = "/usr/bin/chromium"
TOKEN = "studio-test-token-0123456789"
# `VFX_STUDIO_SCREENSHOTS=docs/images` remakes the README's screenshots.
SHOTS = os.environ.get("VFX_STUDIO_SCREENSHOTS")
# WebGL (the BVH player) on SwiftShader, Chromium's CPU renderer, through ANGLE: headless has
# no GPU, and this way Chromium logs no "GPU stall due to ReadPixels" warnings for each frame.
WEBGL = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def shot(tmp: Path, name: str) -> str:
    return str(Path(SHOTS) / name if SHOTS else tmp / name)


def _program(path: str | None, name: str) -> str:
    if path is None or not os.path.exists(path):
        if ALLOW_SKIP:
            pytest.skip(f"{name} is not installed (VFX_TEST_ALLOW_SKIP=1)")
        pytest.fail(f"{name} is not installed: .ci/run installs it (apt-get install {name})")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("studio"), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("studio-token")
    with ServerProcess(data, workers=1, VFX_API_TOKEN=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    _program(CHROMIUM, "chromium")
    sync_api = require("playwright.sync_api")
    with sync_api.sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=WEBGL)
    yield launched
    launched.close()


class Console(list[str]):
    """Errors and warnings the page logged, and uncaught exceptions."""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    console = Console()
    opened.on(
        "console",
        lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    opened.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
    opened.console = console
    opened.set_default_timeout(30_000)
    yield opened
    context.close()
    assert list(console) == [], "the page logged errors"


def upload(page: Any, field: str, path: Path) -> None:
    """Choose a file for a form's file field and wait until its upload is done."""
    page.set_input_files(f"#f-{field}", str(path))
    page.wait_for_selector(f'[data-field="{field}"] figcaption:has-text("✓")')


def slide(page: Any, selector: str, value: float) -> None:
    """Move a range input as a user's drag does: its value, then input and change events."""
    page.eval_on_selector(
        selector,
        """(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true}));
        el.dispatchEvent(new Event('change', {bubbles: true})); }""",
        str(value),
    )


def swap_form(page: Any, server: ServerProcess) -> None:
    """The Create view with the swap form, astronaut onto carphone uploaded."""
    page.goto(server.url + "/#/create")
    page.select_option("#workflow", "swap")
    upload(page, "sources", sample_path("astronaut"))
    upload(page, "target", sample_path("carphone"))


def job_card(page: Any, state: str) -> Any:
    return page.locator(f'li.job[data-state="{state}"]').first


def test_dashboard_shows_the_device(server: ServerProcess, page: Any, tmp_path: Path) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#device .device-kind")
    assert page.inner_text("#device .device-kind") in ("CPU", "CUDA", "MPS")
    assert "GB" in page.inner_text("#device")
    assert "mediapipe-face-mesh" in page.inner_text("#models")
    assert "queued" in page.inner_text("#queue")
    page.screenshot(path=shot(tmp_path, "studio_dashboard.jpg"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than it
    for view in ("dashboard", "create", "jobs", "live"):
        page.goto(f"{server.url}/#/{view}")
        page.wait_for_selector("main section")
        if view == "create":
            page.select_option("#workflow", "swap")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"{view} is {width} px wide on a 390 px screen"


def test_a_swap_from_the_form_runs_to_the_end_and_its_video_plays(
    server: ServerProcess, page: Any, tmp_path: Path
) -> None:
    swap_form(page, server)
    assert page.eval_on_selector('[data-field="target"] progress', "p => p.value") == 1
    page.click("text=Queue swap")
    page.wait_for_url("**/#/jobs")
    # Every width the progress bar takes while the job runs.
    page.evaluate(
        """() => { window.seen = new Set();
        new MutationObserver(() => document.querySelectorAll('li.job .bar')
          .forEach(b => window.seen.add(Number(b.getAttribute('aria-valuenow')))))
        .observe(document.body, {subtree: true, attributes: true, childList: true}); }"""
    )
    job_card(page, "succeeded").wait_for(timeout=120_000)
    seen = sorted(page.evaluate("[...window.seen]"))
    assert len([p for p in seen if 0 < p < 100]) >= 2, seen  # it moved, not jumped to the end
    assert "on local: local workers" in job_card(page, "succeeded").inner_text()
    job_card(page, "succeeded").locator("text=Results").click()
    route = page.locator('.results .route[data-backend="local"]')  # where it ran, and why
    assert "local workers" in route.inner_text()
    video = page.locator("video.result-video")
    video.wait_for()
    played = page.evaluate(
        """async () => { const v = document.querySelector('video.result-video');
        v.muted = true; await v.play();
        await new Promise(r => setTimeout(r, 600));
        return {time: v.currentTime, width: v.videoWidth, error: v.error && v.error.code}; }"""
    )
    # 193 wide as displayed: carphone's 176 pixels are 128/117 wide, and the output keeps them
    assert played["time"] > 0 and played["width"] == 193 and played["error"] is None
    # The target beside it, following the output's playback.
    before = page.evaluate(
        """() => { const b = document.querySelector('video.result-before');
        return {time: b.currentTime, height: b.videoHeight, paused: b.paused}; }"""
    )
    assert before["height"] == 144 and before["time"] > 0 and not before["paused"]
    page.screenshot(path=shot(tmp_path, "studio_results.jpg"))


def test_the_form_follows_the_schema_and_presets_round_trip(
    server: ServerProcess, page: Any
) -> None:
    page.goto(server.url + "/#/create")
    page.wait_for_function("document.querySelectorAll('#workflow option').length > 1")
    names = page.eval_on_selector_all("#workflow option", "os => os.map(o => o.value)")[1:]
    assert {"swap", "mocap", "transcode", "generate", "sleep", "stamp"} <= set(names)
    for name in names:  # every workflow, plugins too, gets a form with no code of its own
        page.select_option("#workflow", name)
        page.wait_for_selector(f'#job-form button:has-text("Queue {name}")')
    page.select_option("#workflow", "swap")
    group = page.locator('details[data-field="options"]')
    assert group.get_attribute("open") is None  # nested options start folded
    group.locator("> summary").click()
    assert page.eval_on_selector("#f-options-engine", "e => e.tagName") == "SELECT"
    assert page.eval_on_selector("#f-options-engine", "e => e.value") == "geometric"
    assert page.get_attribute("#f-options-opacity", "type") == "range"  # 0..1: a slider
    assert page.get_attribute("#f-options-color_match", "role") == "switch"
    assert page.is_checked("#f-options-color_match")
    assert page.get_attribute("#f-options-source_face", "type") == "number"  # no maximum
    assert "Keep hands and objects" in page.inner_text('[data-field="occlusion"] .help')
    assert page.locator("#f-output").count() == 0  # set by the server
    # A dropped file uploads like a chosen one.
    data = base64.b64encode(sample_path("astronaut").read_bytes()).decode()
    page.eval_on_selector(
        '.drop[data-field="sources"]',
        """(zone, data) => { const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'face.png', {type: 'image/png'}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true})); }""",
        data,
    )
    page.wait_for_selector('[data-field="sources"] figcaption:has-text("face.png ✓")')
    # Save a preset, change the form, load the preset back.
    page.select_option("#f-options-blend", "poisson")
    page.uncheck("#f-options-color_match")
    page.fill('[aria-label="preset name"]', "soft")
    page.click("text=Save preset")
    page.select_option("#f-options-blend", "feather")
    page.check("#f-options-color_match")
    page.select_option("#preset-load", "soft")
    assert page.eval_on_selector("#f-options-blend", "e => e.value") == "poisson"
    assert not page.is_checked("#f-options-color_match")
    page.reload()
    page.select_option("#workflow", "swap")
    page.wait_for_selector('#preset-load option:text-is("soft")', state="attached")  # kept


def test_cancel_a_running_job(server: ServerProcess, page: Any, tmp_path: Path) -> None:
    page.goto(server.url + "/#/create")
    page.select_option("#workflow", "sleep")
    slide(page, "#f-seconds", 60)
    page.click("text=Queue sleep")
    page.wait_for_url("**/#/jobs")
    running = job_card(page, "running")
    running.wait_for()
    page.wait_for_function("document.title.includes('%)')")  # the tab shows progress
    page.screenshot(path=shot(tmp_path, "studio_jobs.jpg"))
    running.locator("button.cancel").click()
    cancelled = job_card(page, "cancelled")
    cancelled.wait_for()
    assert cancelled.locator("button.cancel").count() == 0
    assert "Retry" in cancelled.inner_text()
    page.wait_for_function("document.title === 'vfxmocap studio'")


def test_a_failed_job_shows_its_code_message_and_hint(server: ServerProcess, page: Any) -> None:
    page.goto(server.url + "/#/create")
    page.select_option("#workflow", "sleep")
    page.fill("#f-fail", "input")
    page.click("text=Queue sleep")
    failed = job_card(page, "failed")
    failed.wait_for()
    error = failed.locator(".error")
    assert error.locator(".code").inner_text() == "input_error"
    assert "this input is wrong on purpose" in error.locator(".message").inner_text()
    assert error.locator(".hint").inner_text() == "Check the input file and try again."
    # Re-run with the same inputs: another failure; the history filters keep to the state.
    failed.get_by_role("button", name="Re-run", exact=True).click()
    page.wait_for_function("document.querySelectorAll('li.job[data-state=\"failed\"]').length >= 2")
    page.select_option("#filter-state", "failed")
    page.wait_for_function(
        "[...document.querySelectorAll('li.job')].every(j => j.dataset.state === 'failed')"
    )
    page.select_option("#filter-workflow", "swap")
    page.wait_for_selector("li.job", state="detached")  # no failed swap
    assert "No jobs" in page.inner_text("main")
    # Edit and re-run: the form again, filled with the job's inputs.
    page.select_option("#filter-workflow", "")
    job_card(page, "failed").get_by_role("button", name="Edit & re-run").click()
    page.wait_for_url("**/#/create")
    assert page.eval_on_selector("#workflow", "e => e.value") == "sleep"
    assert page.eval_on_selector("#f-fail", "e => e.value") == "input"


def test_preview_shows_one_frame_before_and_after(
    server: ServerProcess, page: Any, tmp_path: Path
) -> None:
    swap_form(page, server)
    page.click("text=Preview frame")
    page.wait_for_selector("#preview-after")
    first = page.get_attribute("#preview-after", "src")
    slide(page, "#preview-frame", 80)  # the slider spans the target's frames now; change runs it
    page.wait_for_function(
        "document.querySelector('#preview output').textContent.startsWith('80 / 119')"
    )
    page.wait_for_function("s => document.querySelector('#preview-after').src !== s", arg=first)
    sizes = page.evaluate(
        """() => ['#preview-before', '#preview-after'].map(s => {
        const i = document.querySelector(s); return [i.naturalWidth, i.naturalHeight, i.src]; })"""
    )
    assert [s[:2] for s in sizes] == [[176, 144], [176, 144]]
    assert sizes[0][2] != sizes[1][2]  # the swap changed the frame
    page.locator("#preview").screenshot(path=shot(tmp_path, "studio_preview.jpg"))


def test_animate_previews_the_portrait_moved_by_one_driving_frame(
    server: ServerProcess, page: Any
) -> None:
    page.goto(server.url + "/#/create")
    page.select_option("#workflow", "animate")
    upload(page, "source", sample_path("astronaut"))
    upload(page, "driving", sample_path("carphone"))
    assert "one frame of driving" in page.inner_text("#preview")
    page.click("text=Preview frame")
    page.wait_for_selector("#preview-after")
    still = page.get_attribute("#preview-after", "src")  # frame 0: the neutral pose itself
    slide(page, "#preview-frame", 100)
    page.wait_for_function("s => document.querySelector('#preview-after').src !== s", arg=still)
    sizes = page.evaluate(
        """() => ['#preview-before', '#preview-after'].map(s => {
        const i = document.querySelector(s); return [i.naturalWidth, i.naturalHeight]; })"""
    )
    assert sizes == [[176, 144], [512, 512]]  # the driving frame, then the portrait it moved


def test_the_queue_resyncs_after_the_server_restarts(browser: Any, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", VFX_SHUTDOWN_GRACE_S="0.5")
    page = browser.new_page()
    try:
        with server, server.client() as client:
            page.goto(server.url + "/#/jobs")
            page.wait_for_selector(".socket.on")
            job = client.submit("sleep", {"seconds": 60})["id"]
            page.wait_for_selector(f'li.job[data-job="{job}"][data-state="running"]')
            server.terminate()
            page.wait_for_selector(".socket.off")  # the page knows it lost the server
            server.start()
            page.wait_for_selector(".socket.on", timeout=30_000)  # reconnected by itself
            client.cancel(job)
            assert client.wait(job, timeout=60)["state"] == "cancelled"
            page.wait_for_selector(f'li.job[data-job="{job}"][data-state="cancelled"]')
            assert page.locator("li.job").count() == 1
    finally:
        page.close()


def drawn(page: Any, selector: str, colour: tuple[int, int, int]) -> int:
    """How many pixels of a canvas are near `colour`."""
    count: int = page.eval_on_selector(
        selector,
        """(c, rgb) => { const copy = document.createElement('canvas');
        copy.width = c.width; copy.height = c.height;
        const ctx = copy.getContext('2d', {willReadFrequently: true}); ctx.drawImage(c, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4)
          n += Math.abs(d[i] - rgb[0]) + Math.abs(d[i+1] - rgb[1])
            + Math.abs(d[i+2] - rgb[2]) < 60;
        return n; }""",
        list(colour),
    )
    return count


def seen(element: Any) -> np.ndarray:
    """An element as the screen shows it (RGB)."""
    import cv2

    png = np.frombuffer(element.screenshot(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def near(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    """How many pixels of an image are near `colour`."""
    return int((np.abs(image.astype(int) - colour).sum(axis=2) < 60).sum())


def moved(a: np.ndarray, b: np.ndarray) -> int:
    """How many pixels differ clearly between two views."""
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40).sum())


def after_render(page: Any, action: Any) -> np.ndarray:
    """The BVH player's canvas as shown once it has drawn again after `action`."""
    count = page.eval_on_selector(".bvh-canvas", "c => Number(c.dataset.renders || 0)")
    action()
    page.wait_for_function(
        "n => Number(document.querySelector('.bvh-canvas').dataset.renders) > n", arg=count
    )
    return seen(page.locator(".bvh-canvas"))


def test_mocap_results_play_the_bvh_skeleton_and_plot_the_face_curves(
    server: ServerProcess, page: Any, tmp_path: Path
) -> None:
    with server.client() as client:
        job = client.submit_files(
            "mocap", {"input": str(sample_path("carphone")), "face_csv": True, "max_frames": 20}
        )
        assert client.wait(job["id"])["state"] == "succeeded"
    page.goto(f"{server.url}/#/job/{job['id']}")
    canvas = page.locator('.bvh-canvas[data-frames="20"]')  # three.js's BVHLoader parsed it
    canvas.wait_for()
    assert int(canvas.get_attribute("data-joints")) > 10
    page.wait_for_function("document.querySelector('.bvh-canvas').dataset.frame !== undefined")
    # Read back as the screen shows it (the compositor's copy, no WebGL readPixels).
    bones = near(seen(canvas), (0x4E, 0xA1, 0xFF))
    assert bones > 200, bones  # a skeleton's lines, not an empty canvas
    assert near(seen(canvas), (0xFF, 0xD1, 0x66)) > 20  # its joints
    page.locator(".bvh").screenshot(path=shot(tmp_path, "studio_bvh.jpg"))
    page.click('.bvh button:has-text("Pause")')
    slide(page, '.bvh input[type="range"]', 0)
    page.wait_for_function("document.querySelector('.bvh-canvas').dataset.frame === '0'")
    first = seen(canvas)
    slide(page, '.bvh input[type="range"]', 15)  # scrubbed: the take moved
    page.wait_for_function("document.querySelector('.bvh-canvas').dataset.frame === '15'")
    assert page.inner_text(".bvh output") == "16 / 20"
    scrubbed = seen(canvas)
    assert moved(first, scrubbed) > 20
    canvas.focus()
    turned = after_render(page, lambda: page.keyboard.press("ArrowLeft"))  # orbit by key
    assert moved(scrubbed, turned) > 50
    box = canvas.bounding_box()

    def drag() -> None:  # and by dragging (OrbitControls)
        page.mouse.move(box["x"] + 200, box["y"] + 180)
        page.mouse.down()
        page.mouse.move(box["x"] + 320, box["y"] + 150, steps=5)
        page.mouse.up()

    dragged = after_render(page, drag)
    assert moved(turned, dragged) > 50
    assert page.eval_on_selector(".bvh-canvas", "c => c.dataset.frame") == "15"  # still paused
    assert near(dragged, (0x4E, 0xA1, 0xFF)) > 200
    # The pose JSON over the input video, at the video's frame.
    page.wait_for_selector(".overlay-canvas")
    page.eval_on_selector(".overlay-video", "v => { v.currentTime = 0.3; }")
    page.wait_for_function("document.querySelector('.overlay-canvas').dataset.frame === '9'")
    assert drawn(page, ".overlay-canvas", (0x4E, 0xA1, 0xFF)) > 50  # the limbs
    assert drawn(page, ".overlay-canvas", (0xFF, 0xD1, 0x66)) > 20  # the joints
    boxes = [page.locator(s).bounding_box() for s in (".overlay-video", ".overlay-canvas")]
    assert boxes[0] == boxes[1]  # the pose lies on the picture, stretched as the video is
    curves = page.locator(".curves-canvas")
    curves.wait_for()
    assert int(curves.get_attribute("data-curves")) > 0
    assert drawn(page, ".curves-canvas", (0x4E, 0xA1, 0xFF)) > 50


def write_y4m(video: Path, target: Path, frames: int = 60) -> Path:
    """A clip as the YUV4MPEG2 file Chromium's fake camera plays (`C420`, not `C420mpeg2`)."""
    import cv2

    from vfxmocap.media.video import VideoReader

    with target.open("wb") as out:
        for index, frame in enumerate(VideoReader(video)):
            if index == 0:
                h, w = frame.shape[:2]
                out.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420\n".encode())
            if index >= frames:
                break
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return target


def test_live_mode_sends_the_camera_and_draws_processed_frames(
    server: ServerProcess, playwright: Any, tmp_path: Path
) -> None:
    clip = write_y4m(sample_path("carphone"), tmp_path / "carphone.y4m")
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # A slow machine (CI under load): the page's work runs 4x slower, so the camera's
        # frames are grabbed and encoded slower than the animation frames that ask for them.
        cdp = page.context.new_cdp_session(page)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
        page.goto(server.url + "/#/live")
        page.select_option("#live-stream", "swap")
        upload(page, "sources", sample_path("astronaut"))
        page.click("#live-start")
        page.wait_for_function(
            "Number(document.querySelector('#live-out').dataset.frames || 0) >= 20", timeout=60_000
        )
        size = page.eval_on_selector("#live-out", "c => [c.width, c.height]")
        assert size == [176, 144]  # the camera's frames, processed and sent back
        page.wait_for_selector("#live-stats")
        assert "fps" in page.inner_text("#live-stats")
        page.click("#live-stop")
    finally:
        browser.close()
    assert errors == []


def test_a_token_protected_server_asks_for_the_token(
    token_server: ServerProcess, page: Any
) -> None:
    page.goto(token_server.url + "/")
    dialog = page.locator('[role="dialog"]')
    dialog.wait_for()
    page.fill("#token", "not-the-token")
    page.click("text=Sign in")
    page.wait_for_selector('[role="dialog"] .error')
    page.console.clear()  # the refused request is logged by the browser, as it should be
    page.fill("#token", TOKEN)
    page.click("text=Sign in")
    page.wait_for_selector("#device .device-kind")
    assert dialog.count() == 0
    page.goto(token_server.url + "/#/jobs")
    page.wait_for_selector(".socket.on")  # the events socket carries the token too


def test_the_javascript_client_against_a_real_server(token_server: ServerProcess) -> None:
    node = _program(shutil.which("node"), "nodejs")
    env = {
        **os.environ,
        "VFX_URL": token_server.url,
        "VFX_TOKEN": TOKEN,
        "VFX_FACE": str(sample_path("astronaut")),
        "VFX_IMAGE": str(sample_path("coffee")),
    }
    # Node 22 has WebSocket built in; Node 20 (Debian's) behind a flag.
    builtin = subprocess.run(
        [node, "-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)"], check=False
    )
    flags = [] if builtin.returncode == 0 else ["--experimental-websocket"]
    done = subprocess.run(
        [node, *flags, "--test", str(ROOT / "tests" / "js")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout
