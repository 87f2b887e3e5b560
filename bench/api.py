"""The service under load and under faults, against a real `vfx serve` process.

- load: N concurrent clients submit a trivial job (`sleep 0`, the tests' plugin) at an
  offered rate R in all (open loop) and poll each job, for S seconds (goal: p99 submit
  < 50 ms, >= 200 submissions/s, no job lost or duplicated);
- kill: kill -9 of the server mid-job, K times, then a restart (goal: every job ends
  succeeded or failed with a reason; none lost, none stuck in running);
- stream: live face swap, 640x480 JPEG frames over a loopback WebSocket, one frame in
  flight (goal: >= 25 fps sustained, p95 round trip <= 60 ms, server memory flat);
- hostile: what an attacker on loopback can do to the server's memory and limits:
  13000x13000 bomb PNGs as stream frames (goal: refused before decode, < 100 MB growth),
  50 concurrent pose streams (goal: those beyond the caps refused with 1013), 50 streams
  opened and closed in waves (goal: memory back near where it started), a 300 MB JSON body
  (goal: 413 before it is read), random Authorization headers (goal: limited like requests
  without one) and failed authentications per minute.

    python bench/api.py [--clients 50 --seconds 60 --kills 20 --stream-seconds 60]
    python bench/api.py --only hostile [--auth-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clips
import cv2
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bombs import bomb_png
from tests.servers import ServerProcess
from vfxmocap.media.image import encode_image
from vfxmocap.samples import sample_path


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- load ----------------------------------------------------------------------------------


class _Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams. httpx costs ~4 ms of CPU
    per request here, more than the server spends; on a 2-core box shared with the server,
    the load generator must not be the bottleneck it measures."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _client(
    port: int, until: float, rate: float, latencies: list[float], ids: list[str]
) -> None:
    """One client: submits at `rate` per second (open loop, so a slow server shows as
    latency, not as fewer requests) and polls its previous job between submissions."""
    connection = _Connection("127.0.0.1", port)
    body = json.dumps({"workflow": "sleep", "inputs": {"seconds": 0}}).encode()
    await asyncio.sleep(np.random.uniform(0, 1 / rate))  # clients start out of step
    next_at = time.monotonic()
    try:
        while next_at < until:
            started = time.perf_counter()
            status, data = await connection.request("POST", "/api/jobs", body)
            latencies.append(time.perf_counter() - started)
            assert status == 202, data
            job_id = json.loads(data)["id"]
            ids.append(job_id)
            status, data = await connection.request("GET", f"/api/jobs/{job_id}")
            assert status == 200, data
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        connection.close()


def load(clients: int, seconds: float, workers: int, rate: float) -> dict[str, Any]:
    # All clients share one address here; the per-client limit would measure itself.
    limits = {"VFX_RATE_LIMIT_PER_S": "100000", "VFX_RATE_BURST": "100000"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        ServerProcess(Path(tmp), workers=workers, **limits) as server,
    ):
        latencies: list[float] = []
        ids: list[str] = []

        async def main() -> None:
            until = time.monotonic() + seconds
            await asyncio.gather(
                *(
                    _client(server.port, until, rate / clients, latencies, ids)
                    for _ in range(clients)
                )
            )

        started = time.monotonic()
        asyncio.run(main())
        elapsed = time.monotonic() - started
        drained = time.monotonic()
        with server.client() as client:
            while True:
                states = client.queue()["states"]
                if states["queued"] == 0 and states["running"] == 0:
                    break
                time.sleep(0.5)
        drain_s = time.monotonic() - drained
    lat = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "submitted": len(ids),
        "submissions_per_s": round(len(ids) / elapsed, 1),
        "submit_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "submit_p99_ms": round(float(np.percentile(lat, 99)), 2),
        "duplicate_ids": len(ids) - len(set(ids)),
        "stored": sum(states.values()),
        "succeeded": states["succeeded"],
        "lost": len(set(ids)) - sum(states.values()),
        "drain_s": round(drain_s, 1),
    }


# --- kill -9 ---------------------------------------------------------------------------


def kills(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp))
        ids = []
        for _ in range(count):
            server.start()
            with server.client() as client:
                job_id = client.submit("sleep", {"seconds": 10}, timeout_s=120)["id"]
                ids.append(job_id)
                while client.job(job_id)["state"] != "running":
                    time.sleep(0.05)
                time.sleep(0.5)  # mid-job
            server.kill()
        server.start()
        try:
            with server.client() as client:
                finals = [client.wait(job_id, timeout=600) for job_id in ids]
                states = client.queue()["states"]
        finally:
            server.terminate()
    reasons = [f["error"]["code"] for f in finals if f["state"] == "failed"]
    return {
        "kills": count,
        "jobs": len(ids),
        "succeeded": sum(f["state"] == "succeeded" for f in finals),
        "failed_with_reason": len(reasons),
        "failure_codes": sorted(set(reasons)),
        "stuck_running": states["running"] + states["queued"],
        "lost": len(ids) - sum(states.values()),
    }


# --- live stream -----------------------------------------------------------------------


def stream(seconds: float) -> dict[str, Any]:
    frames = [
        encode_image(cv2.resize(f, (640, 480), interpolation=cv2.INTER_CUBIC), ".jpg", quality=85)
        for f in clips.carphone_frames()
    ]
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp)) as server:
        assert server.proc is not None
        with server.client() as client:
            source = client.upload(sample_path("astronaut"))["id"]
        rtts: list[float] = []
        rss: list[tuple[float, float]] = []

        async def main() -> dict[str, Any]:
            url = f"ws://127.0.0.1:{server.port}/api/stream/swap"
            async with websockets.connect(url, max_size=2**24) as ws:
                await ws.send(json.dumps({"sources": [source]}))
                assert json.loads(await ws.recv())["type"] == "ready"
                started = time.monotonic()
                last_stats: dict[str, Any] = {}
                i = 0
                while time.monotonic() - started < seconds:
                    sent = time.perf_counter()
                    await ws.send(frames[i % len(frames)])
                    while True:
                        reply = await ws.recv()
                        if isinstance(reply, bytes):
                            break
                        last_stats = json.loads(reply)
                    rtts.append(time.perf_counter() - sent)
                    i += 1
                    if i % 300 == 0:
                        rss.append((time.monotonic() - started, _rss_mb(server.proc.pid)))
                return {"frames": i, "elapsed": time.monotonic() - started, "server": last_stats}

        result = asyncio.run(main())
    lat = np.array(rtts[30:]) * 1000  # after warm-up
    return {
        "seconds": round(result["elapsed"], 1),
        "frames": result["frames"],
        "fps": round(result["frames"] / result["elapsed"], 1),
        "rtt_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "rtt_p95_ms": round(float(np.percentile(lat, 95)), 1),
        "server_rss_mb_first": round(rss[0][1], 1) if rss else None,
        "server_rss_mb_last": round(rss[-1][1], 1) if rss else None,
        "server_dropped": result["server"].get("dropped"),
    }


# --- hostile clients -------------------------------------------------------------------


class _Memory:
    """A server process's resident memory now and at its peak since `reset_peak` (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _field(self, name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def now(self) -> float:
        return self._field("VmRSS")

    def peak(self) -> float:
        return self._field("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM restarts from VmRSS


def _pose_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/api/stream/pose"


def _small_frames(count: int) -> list[bytes]:
    return [encode_image(f, ".jpg", quality=85) for f in clips.carphone_frames()[:count]]


async def _reply(ws: Any) -> bytes | dict[str, Any]:
    """The next frame, or the next message that is not a stats report."""
    while True:
        reply = await ws.recv()
        if isinstance(reply, bytes):
            return reply
        message: dict[str, Any] = json.loads(reply)
        if message.get("type") != "stats":
            return message


async def _pose_stream(
    url: str, frames: list[bytes], hold: asyncio.Barrier | None = None
) -> tuple[str, int, int]:
    """One client: settings, then frames one at a time, then (with `hold`) wait for the
    others. (outcome: served / refused (1013) / closed N, frames decoded, frames refused)."""
    decoded = refused = 0
    outcome = "served"
    try:
        async with websockets.connect(url, max_size=2**24) as ws:
            await ws.send(json.dumps({"draw": "control"}))
            if (await _reply(ws)).get("type") != "ready":  # type: ignore[union-attr]
                await ws.recv()  # the close that follows the error
            for frame in frames:
                await ws.send(frame)
                if isinstance(await _reply(ws), bytes):
                    decoded += 1
                else:
                    refused += 1
            if hold is not None:
                await hold.wait()
                hold = None
    except websockets.ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        outcome = "refused" if code == 1013 else f"closed {code}"
    except (OSError, websockets.InvalidHandshake) as exc:  # not even accepted
        outcome = type(exc).__name__
    if hold is not None:
        await hold.wait()
    return outcome, decoded, refused


def _warm(url: str) -> None:
    """One stream first, so the baseline has MediaPipe's pose graph code loaded."""
    asyncio.run(_pose_stream(url, _small_frames(3)))
    time.sleep(1.0)


async def _bombed_stream(
    url: str, bomb: bytes, frames: int, opened: asyncio.Barrier
) -> tuple[int, int]:
    """A stream that is open and has processed a real frame; once all are (`opened`, twice:
    the baseline is taken in between), `frames` bombs: (decoded, refused)."""
    decoded = refused = 0
    async with websockets.connect(url, max_size=2**24) as ws:
        await ws.send(json.dumps({"draw": "control"}))
        await _reply(ws)
        await ws.send(_small_frames(1)[0])
        await _reply(ws)
        await opened.wait()
        await opened.wait()
        for _ in range(frames):
            await ws.send(bomb)
            if isinstance(await _reply(ws), bytes):
                decoded += 1
            else:
                refused += 1
    return decoded, refused


def bomb_frames(sockets: int, frames: int) -> dict[str, Any]:
    bomb = bomb_png(13000, 13000)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp)) as server:
        assert server.proc is not None
        memory, url = _Memory(server.proc.pid), _pose_url(server.port)
        base = 0.0

        async def main() -> list[tuple[int, int]]:
            nonlocal base
            opened = asyncio.Barrier(sockets + 1)
            tasks = [
                asyncio.create_task(_bombed_stream(url, bomb, frames, opened))
                for _ in range(sockets)
            ]
            await opened.wait()
            base = memory.now()
            memory.reset_peak()
            await opened.wait()
            return await asyncio.gather(*tasks)

        results = asyncio.run(main())
        peak = memory.peak()
    return {
        "bomb": "13000x13000 PNG",
        "bomb_kb": round(len(bomb) / 1024),
        "sockets": sockets,
        "sent": sockets * frames,
        "decoded": sum(r[0] for r in results),
        "refused": sum(r[1] for r in results),
        "rss_base_mb": round(base),
        "rss_growth_mb": round(peak - base),
    }


def concurrent_streams(count: int, wave: int, **env: str) -> dict[str, Any]:
    """`count` pose streams from one address, `wave` at a time (all at once when
    wave == count), each sending 5 frames and staying open until its wave is done."""
    frames = _small_frames(5)
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), **env) as server:
        assert server.proc is not None
        memory, url = _Memory(server.proc.pid), _pose_url(server.port)
        _warm(url)
        base = memory.now()
        memory.reset_peak()
        outcomes: list[str] = []
        open_rss: list[float] = []

        async def one_wave(size: int) -> None:
            hold = asyncio.Barrier(size + 1)
            tasks = [asyncio.create_task(_pose_stream(url, frames, hold)) for _ in range(size)]
            await hold.wait()  # every stream is open or refused
            open_rss.append(memory.now())
            outcomes.extend(r[0] for r in await asyncio.gather(*tasks))

        async def main() -> None:
            for start in range(0, count, wave):
                await one_wave(min(wave, count - start))

        asyncio.run(main())
        peak = memory.peak()
        time.sleep(2.0)  # the handlers' cleanup after the last close
        after = memory.now()
    return {
        "streams": count,
        "wave": wave,
        "served": outcomes.count("served"),
        "refused_1013": outcomes.count("refused"),
        "other": sorted({o for o in outcomes if o not in ("served", "refused")}),
        "rss_base_mb": round(base),
        "rss_open_mb": round(max(open_rss)),
        "rss_peak_mb": round(peak),
        "rss_after_close_mb": round(after),
    }


async def _huge_body(port: int, size: int) -> tuple[int | None, float, int]:
    """POST /api/jobs declaring `size` bytes of JSON, sent 1 MB at a time until the server
    answers: (status, seconds to the answer, bytes sent by then)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    prefix, suffix = b'{"workflow": "sleep", "inputs": {"seconds": 0, "pad": "', b'"}}'
    chunk = b"a" * 2**20
    started = time.perf_counter()
    answer = asyncio.create_task(reader.readline())
    writer.write(head + prefix)
    sent = len(prefix)
    try:
        while sent < size and not answer.done():
            part = chunk[: size - len(suffix) - sent] or suffix
            writer.write(part)
            sent += len(part)
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.wait({drain, answer}, return_when=asyncio.FIRST_COMPLETED)
            drain.cancel()
        line = await asyncio.wait_for(answer, 120)
    except (ConnectionError, TimeoutError):
        line = b""
    elapsed = time.perf_counter() - started
    writer.close()
    return (int(line.split()[1]) if line else None), elapsed, sent


async def _allowed(port: int, count: int, headers: Any) -> int:
    """Of `count` back-to-back requests on one connection, how many got 200."""
    connection = _Connection("127.0.0.1", port)
    ok = 0
    try:
        for _ in range(count):
            status, _ = await connection.request("GET", "/api/healthz", headers=headers())
            ok += status == 200
    finally:
        connection.close()
    return ok


async def _guesses(port: int, seconds: float, rate: float) -> dict[str, int]:
    """Wrong tokens at `rate` per second for `seconds`: how each was answered."""
    connection = _Connection("127.0.0.1", port)
    answers: dict[str, int] = {}
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            guess = {"Authorization": f"Bearer {secrets.token_hex(16)}"}
            status, _ = await connection.request("GET", "/api/healthz", headers=guess)
            answers[str(status)] = answers.get(str(status), 0) + 1
            await asyncio.sleep(1 / rate)
    finally:
        connection.close()
    return answers


def limits(body_mb: int, requests: int, auth_seconds: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp)) as server:
        assert server.proc is not None
        memory = _Memory(server.proc.pid)
        base = memory.now()
        memory.reset_peak()
        status, elapsed, sent = asyncio.run(_huge_body(server.port, body_mb * 2**20))
        report["body"] = {
            "declared_mb": body_mb,
            "status": status,
            "seconds": round(elapsed, 3),
            "sent_mb": round(sent / 2**20, 1),
            "rss_growth_mb": round(memory.peak() - base),
        }
        time.sleep(1.5)  # a fresh bucket for each of the next two
        plain = asyncio.run(_allowed(server.port, requests, dict))
        time.sleep(1.5 + requests / 100)
        noise = asyncio.run(
            _allowed(server.port, requests, lambda: {"Authorization": secrets.token_hex(8)})
        )
        report["random_authorization"] = {
            "requests": requests,
            "allowed_without_header": plain,
            "allowed_with_random_header": noise,
        }
    env = {"VFX_API_TOKEN": secrets.token_hex(16)}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp), **env) as server:
        answers = asyncio.run(_guesses(server.port, auth_seconds, rate=50))
    compared = answers.get("401", 0)
    report["failed_auth"] = {
        "seconds": auth_seconds,
        "attempts": sum(answers.values()),
        "answers": answers,
        "compared_per_minute": round(compared * 60 / auth_seconds, 1),
    }
    return report


def hostile(auth_seconds: float) -> dict[str, Any]:
    return {
        "bomb_frames": bomb_frames(sockets=4, frames=2),
        "streams_at_once": concurrent_streams(50, wave=50),
        "streams_in_waves": concurrent_streams(50, wave=16, VFX_STREAM_MAX_PER_CLIENT="16"),
        **limits(body_mb=300, requests=1500, auth_seconds=auth_seconds),
    }


def _print_hostile(r: dict[str, Any]) -> None:
    b = r["bomb_frames"]
    print(
        f"bomb frames ({b['bomb']}, {b['bomb_kb']} kB) x{b['sent']} on {b['sockets']} streams: "
        f"{b['refused']} refused, {b['decoded']} decoded (goal: all refused); server RSS "
        f"+{b['rss_growth_mb']} MB from {b['rss_base_mb']} MB (goal < 100)"
    )
    for key in ("streams_at_once", "streams_in_waves"):
        s = r[key]
        print(
            f"{s['streams']} pose streams, {s['wave']} at a time: {s['served']} served, "
            f"{s['refused_1013']} refused with 1013 {s['other'] or ''}; server RSS "
            f"{s['rss_base_mb']} -> {s['rss_open_mb']} open (peak {s['rss_peak_mb']}) -> "
            f"{s['rss_after_close_mb']} MB 2 s after the last close"
        )
    d = r["body"]
    print(
        f"{d['declared_mb']} MB JSON body: {d['status']} after {d['seconds']} s, "
        f"{d['sent_mb']} MB sent by then (goal: 413 before it is read); "
        f"server RSS +{d['rss_growth_mb']} MB"
    )
    a = r["random_authorization"]
    print(
        f"{a['requests']} requests on one connection: {a['allowed_without_header']} allowed "
        f"without Authorization, {a['allowed_with_random_header']} with a random one each "
        "(goal: the same)"
    )
    f = r["failed_auth"]
    print(
        f"wrong tokens for {f['seconds']} s: {f['attempts']} sent, answers {f['answers']}: "
        f"{f['compared_per_minute']} compared per minute"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1, help="Local worker processes.")
    parser.add_argument("--rate", type=float, default=210, help="Offered submissions/s.")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stream-seconds", type=float, default=60)
    parser.add_argument("--auth-seconds", type=float, default=60)
    parser.add_argument("--only", choices=["load", "kill", "stream", "hostile"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.only in (None, "load"):
        report["load"] = load(args.clients, args.seconds, args.workers, args.rate)
    if args.only in (None, "kill"):
        report["kill"] = kills(args.kills)
    if args.only in (None, "stream"):
        report["stream"] = stream(args.stream_seconds)
    if args.only in (None, "hostile"):
        report["hostile"] = hostile(args.auth_seconds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if "load" in report:
        r = report["load"]
        print(
            f"load: {r['clients']} clients x {r['seconds']} s: {r['submitted']} jobs, "
            f"{r['submissions_per_s']}/s (goal >= 200), submit p50 {r['submit_p50_ms']} ms, "
            f"p99 {r['submit_p99_ms']} ms (goal < 50); lost {r['lost']}, duplicated "
            f"{r['duplicate_ids']}, succeeded {r['succeeded']} (queue drained in {r['drain_s']} s)"
        )
    if "kill" in report:
        r = report["kill"]
        print(
            f"kill -9 x{r['kills']}: {r['succeeded']} succeeded, {r['failed_with_reason']} failed "
            f"with a reason {r['failure_codes']}, {r['stuck_running']} stuck, {r['lost']} lost"
        )
    if "stream" in report:
        r = report["stream"]
        print(
            f"live swap 640x480 over WebSocket: {r['fps']} fps for {r['seconds']} s (goal >= 25), "
            f"round trip p50 {r['rtt_p50_ms']} ms, p95 {r['rtt_p95_ms']} ms (goal <= 60); "
            f"server RSS {r['server_rss_mb_first']} -> {r['server_rss_mb_last']} MB"
        )

    if "hostile" in report:
        _print_hostile(report["hostile"])


if __name__ == "__main__":
    main()
