"""A Python client of the vfxmocap API: what `vfx submit`, `vfx jobs` and the tests use.

    client = Client("http://127.0.0.1:8420")
    job = client.submit_files("swap", {"sources": ["me.jpg"], "target": "shot.mp4"})
    done = client.wait(job["id"])
    client.download(done["id"], "output", "swapped.mp4")

Local files named in a workflow's file fields are uploaded first and replaced by their
upload ids; the server never sees a client path. Server errors come back as the same typed
errors the CLI reports (`InputError`, `InvalidParams`, ...).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from vfxmocap.core.errors import (
    Cancelled,
    DeviceError,
    InputError,
    InsufficientMemory,
    InvalidParams,
    JobTimeout,
    ModelMissing,
    VfxError,
    WorkerUnavailable,
)
from vfxmocap.core.files import atomic_path

_ERRORS: dict[str, type[VfxError]] = {
    cls.code: cls
    for cls in (
        InputError,
        InvalidParams,
        ModelMissing,
        DeviceError,
        InsufficientMemory,
        Cancelled,
        JobTimeout,
        WorkerUnavailable,
    )
}
# The API's own refusals of a route or an id that does not exist: the caller's input.
_ERRORS.update(not_found=InputError, method_not_allowed=InputError)
FINAL_STATES = {"succeeded", "failed", "cancelled"}


class Client:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> WorkerUnavailable:
        return WorkerUnavailable(
            f"cannot reach the vfxmocap server at {self.url}: {exc}",
            hint="Start it with `vfx serve`, or pass the right --server URL.",
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, f"/api{path}", **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # --- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        workflow: str,
        inputs: dict[str, Any],
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        backend: str = "auto",
    ) -> dict[str, Any]:
        """Queue a job; `backend` auto (the server's order) or local, celery, remote. The
        answer has its id, position, and the backend and route it took."""
        body = {"workflow": workflow, "inputs": inputs, "priority": priority, "backend": backend}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        result: dict[str, Any] = self._request("POST", "/jobs", json=body)
        return result

    def submit_files(self, workflow: str, inputs: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Upload the local files named in the workflow's file fields, then submit."""
        spec = self.workflow(workflow)
        inputs = dict(inputs)
        for name in spec["files"]:
            value = inputs.get(name)
            if value is None:
                continue
            if isinstance(value, list | tuple):
                inputs[name] = [self.upload(v)["id"] for v in value]
            else:
                inputs[name] = self.upload(value)["id"]
        return self.submit(workflow, inputs, **kwargs)

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", _job_path(job_id))
        return result

    def jobs(
        self,
        *,
        state: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: float | None = None,
    ) -> dict[str, Any]:
        params = {"state": state, "workflow": workflow, "limit": limit, "cursor": cursor}
        query = {k: v for k, v in params.items() if v is not None}
        result: dict[str, Any] = self._request("GET", "/jobs", params=query)
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", _job_path(job_id, "cancel"))
        return result

    def retry(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", _job_path(job_id, "retry"))
        return result

    def delete(self, job_id: str) -> None:
        self._request("DELETE", _job_path(job_id))

    def log(self, job_id: str) -> str:
        return self._send("GET", _job_path(job_id, "log")).text

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.25,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; returns its final state (whatever it is)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job["state"] in FINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"job {job_id} did not finish within {timeout:.0f} s")
            time.sleep(poll_s)

    def download(self, job_id: str, name: str, dest: str | Path) -> Path:
        """Stream one output to `dest` (a file, or a folder to put it in), atomically."""
        dest = Path(dest)
        try:
            with self.http.stream("GET", f"/api{_job_path(job_id, 'outputs', name)}") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                if dest.is_dir():
                    disposition = response.headers.get("content-disposition", "")
                    filename = disposition.rpartition("filename=")[2].strip('"') or name
                    dest = dest / Path(filename).name
                with atomic_path(dest) as tmp, tmp.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return dest

    # --- uploads and the rest -----------------------------------------------------------

    def upload(self, path: str | Path) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        with path.open("rb") as fh:
            result: dict[str, Any] = self._request(
                "POST", "/uploads", files={"file": (path.name, fh)}
            )
        return result

    def workflows(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/workflows")
        return result

    def workflow(self, name: str) -> dict[str, Any]:
        for spec in self.workflows():
            if spec["name"] == name:
                return spec
        known = ", ".join(w["name"] for w in self.workflows())
        raise InvalidParams(f"the server has no workflow {name!r}", hint=f"Known: {known}.")

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/system")
        return result

    def queue(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/queue")
        return result


_JOB_ID = re.compile(r"[0-9a-f]{32}")


def _job_path(job_id: str, *rest: str) -> str:
    """`/jobs/<id>/...` for a well-formed id only: `../../etc` must not become another URL."""
    if not _JOB_ID.fullmatch(job_id):
        raise InputError(
            f"{job_id[:100]!r} is not a job id",
            hint="A job id is 32 hex characters; `vfx jobs list` shows them.",
        )
    return "/".join(("/jobs", job_id, *(quote(part, safe="") for part in rest)))


def _error(response: httpx.Response) -> VfxError:
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code = error.get("code", "internal")
    message = error.get("message") or f"HTTP {response.status_code}"
    cls = _ERRORS.get(code, VfxError)
    if response.status_code == 401:
        cls = InvalidParams
    hint = error.get("hint")
    exc = cls(message, hint=hint) if cls is not VfxError else VfxError(message, hint=hint)
    exc.status_code = response.status_code  # type: ignore[attr-defined]
    return exc
