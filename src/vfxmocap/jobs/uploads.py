"""Uploaded media, stored under opaque ids. Clients name files only by these ids: nothing
a client sends ever becomes a filesystem path."""

from __future__ import annotations

import functools
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from vfxmocap.core.errors import InputError, MediaError, MediaTooLarge
from vfxmocap.media.image import check_pixels, image_header, image_limit
from vfxmocap.media.video import probe

_ID = re.compile(r"[0-9a-f]{32}")
MAX_NAME = 255  # characters of an uploaded file's name (NAME_MAX on most file systems)
# Containers we accept as video, by what PyAV reports (content, not the name).
_VIDEO_EXT = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv", "avi": ".avi"}
# By Pillow's format name (MPO: many phones' JPEGs); the keys are media.image's DECODABLE_FORMATS.
_IMAGE_EXT = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


def sniff(path: Path) -> tuple[str, str]:
    """(kind, suffix) of a file from its bytes: an image we decode (its size checked from
    its header), or a video PyAV decodes. Anything else is a `MediaError`."""
    header = image_header(path)
    if header is not None:
        check_pixels(header.width, header.height, path, image_limit())
        return "image", _IMAGE_EXT[header.format]
    info = probe(path)  # raises MediaError for anything that is not a playable video
    return "video", _VIDEO_EXT.get(info.container, ".mp4")


@functools.lru_cache(maxsize=16)
def path_pattern(folder: Path, rest: str) -> re.Pattern[str]:
    """A regex for `folder/<rest>` as messages may spell it (as given, or resolved)."""
    spellings = sorted({str(folder), str(folder.resolve())}, key=len, reverse=True)
    return re.compile(f"(?:{'|'.join(map(re.escape, spellings))})[/\\\\]{rest}")


class UploadStore:
    """Files in `root/<id><suffix>` with a JSON sidecar (original name, kind, size)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def new_part(self) -> tuple[str, Path]:
        """An id and the temporary path its bytes stream into."""
        upload_id = uuid.uuid4().hex
        return upload_id, self.root / f".{upload_id}.part"

    def commit(self, upload_id: str, part: Path, filename: str | None) -> dict[str, Any]:
        """Check what the streamed bytes are, then keep them under the id."""
        shown = Path(filename or "upload").name
        if len(shown) > MAX_NAME:  # no file system keeps it, and every error would quote it
            part.unlink(missing_ok=True)
            raise InputError(
                f"the file name is {len(shown)} characters long; at most {MAX_NAME}",
                hint="Rename the file and upload it again.",
            )
        try:
            size = part.stat().st_size
            if size == 0:
                raise MediaError(shown, "the upload is empty")
            kind, suffix = sniff(part)
        except MediaTooLarge as exc:  # said with the client's file name, not a server path
            part.unlink(missing_ok=True)
            raise MediaTooLarge(shown, exc.reason, hint=exc.hint) from None
        except MediaError as exc:
            part.unlink(missing_ok=True)
            raise MediaError(
                shown,
                exc.reason if size == 0 else f"not an image or video ({exc.reason})",
                hint="Upload a PNG, JPEG, WebP image or a video (MP4, MOV, MKV, WebM, AVI).",
            ) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        final = self.root / f"{upload_id}{suffix}"
        shutil.move(part, final)
        meta = {
            "id": upload_id,
            "kind": kind,
            "size": size,
            "filename": Path(filename or "").name,
            "suffix": suffix,
        }
        (self.root / f"{upload_id}.json").write_text(json.dumps(meta))
        return meta

    def path(self, upload_id: str) -> Path:
        """The file behind an id. Only well-formed ids of existing uploads resolve."""
        if not isinstance(upload_id, str) or not _ID.fullmatch(upload_id):
            raise InputError(
                f"{upload_id!r} is not an upload id",
                hint="Upload the file first (POST /api/uploads) and pass the id it returns.",
            )
        meta_file = self.root / f"{upload_id}.json"
        if not meta_file.is_file():
            raise InputError(f"upload {upload_id} does not exist", hint="Upload the file again.")
        meta = json.loads(meta_file.read_text())
        return self.root / f"{upload_id}{meta['suffix']}"

    def client_name(self, upload_id: str) -> str:
        """The file name the client uploaded under this id ("upload" when it sent none)."""
        try:
            meta = json.loads((self.root / f"{upload_id}.json").read_text())
        except (OSError, ValueError):
            return "upload"
        return str(meta.get("filename") or "upload")

    def scrub(self, text: str) -> str:
        """`text` with each upload's server path replaced by the client's file name."""
        return path_pattern(self.root, r"\.?(?P<id>[0-9a-f]{32})(?:\.\w+)*").sub(
            lambda m: self.client_name(m["id"]), text
        )

    def id_of(self, path: str) -> str | None:
        """The upload id behind a path `path()` gave, or None for any other file."""
        candidate = Path(path)
        upload_id = candidate.name.split(".", 1)[0]
        if candidate.parent != self.root or not _ID.fullmatch(upload_id):
            return None
        return upload_id

    def resolve(self, data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        """`data` with the upload ids of its file fields (one id, or a list) made paths."""
        for name in fields:
            value = data.get(name)
            if isinstance(value, list):
                data[name] = [str(self.path(v)) for v in value]
            elif value is not None:
                data[name] = str(self.path(value))
        return data

    def remove_older_than(self, cutoff: float) -> int:
        """Retention: uploads (and stray partial ones) last changed before `cutoff`.
        A queued job keeps working: its input was copied nowhere, so retention should be
        longer than the queue is deep (days, not minutes)."""
        removed = 0
        for meta in self.root.glob("*.json"):
            if meta.stat().st_mtime < cutoff:
                upload_id = meta.stem
                for path in self.root.glob(f"{upload_id}*"):
                    path.unlink(missing_ok=True)
                removed += 1
        for part in self.root.glob(".*.part"):
            if part.stat().st_mtime < cutoff:
                part.unlink(missing_ok=True)
        return removed
