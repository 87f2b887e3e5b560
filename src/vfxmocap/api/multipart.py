"""Uploads streamed to their file once: the multipart body is parsed as it arrives and each
batch of it is parsed and written in a worker thread, so the event loop never writes and
no spooled copy is made first (Starlette's form parser spools every file)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO, Any

from fastapi import Request
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from vfxmocap.api.security import error_response, upload_too_large
from vfxmocap.jobs.uploads import UploadStore

_BATCH = 1 << 20  # bytes handed to the writing thread at once (one hop per MB, not per chunk)
_HINT = "Send one multipart/form-data part named 'file' holding the file."
# The OpenAPI description of the body the route parses itself.
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class UploadRefused(Exception):
    """The body is not one file we take: answered with `response`."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _refused(message: str) -> UploadRefused:
    return UploadRefused(error_response(400, "input_error", message, _HINT))


class _FilePart:
    """python-multipart's callbacks: the one part named `file` goes to `path`, counted
    against `limit`; any other part is refused."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.fh: IO[bytes] | None = None
        self.filename: str | None = None
        self.size = 0
        self.ended = False
        self._field, self._value = b"", b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_end": self._end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name != "file":
            raise _refused(f"unexpected form field {name[:100]!r}: an upload is one file")
        if self.fh is not None:
            raise _refused("more than one file: an upload is one file")
        self.filename = params.get(b"filename", b"").decode("utf-8", "replace") or None
        self.fh = self.path.open("wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.fh is None:
            raise _refused("data outside a file part")
        self.size += end - start
        if self.size > self.limit:
            raise UploadRefused(upload_too_large(self.limit))
        self.fh.write(data[start:end])

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _boundary(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise _refused("the body is not multipart/form-data with a boundary")
    return boundary


async def receive_upload(request: Request, uploads: UploadStore) -> dict[str, Any]:
    """Stream the request's one file into the upload store; returns its metadata. Raises
    `UploadRefused` for a body that is not one file within the limit (nothing is kept)."""
    boundary = _boundary(request.headers.get("content-type", ""))
    upload_id, path = uploads.new_part()
    part = _FilePart(path, uploads.max_bytes)
    parser = MultipartParser(boundary, part.callbacks())
    try:
        batch = bytearray()
        async for chunk in request.stream():
            batch += chunk
            if len(batch) >= _BATCH:
                await asyncio.to_thread(parser.write, bytes(batch))
                batch.clear()
        if batch:
            await asyncio.to_thread(parser.write, bytes(batch))
        part.close()
        if part.fh is None:
            raise _refused("the form has no part named 'file'")
        if not part.ended:
            raise _refused("the body ends before the multipart's closing boundary")
    except MultipartParseError as exc:
        part.close()
        path.unlink(missing_ok=True)
        raise _refused(f"a malformed multipart body ({exc})") from None
    except BaseException:  # refused, or the client went away: no half-written file stays
        part.close()
        path.unlink(missing_ok=True)
        raise
    return await asyncio.to_thread(uploads.commit, upload_id, path, part.filename)
