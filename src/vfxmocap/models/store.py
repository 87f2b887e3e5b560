"""The model store: where each catalog model's files live, whether they are ready, and pulls.

Files live at `<models_dir>/<model name>/<file path>`; built-in models point into the
package that ships them. Pulls resume partial downloads and check sha256; offline, they
fail at once with the exact file, place and hash to fetch by hand.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InvalidParams, ModelMissing
from vfxmocap.core.files import atomic_path
from vfxmocap.core.log import get_logger
from vfxmocap.core.progress import Progress
from vfxmocap.models.catalog import Catalog, ModelFile, ModelSpec, load_catalog

log = get_logger("models")

_CHUNK = 1 << 20
# A Hugging Face repo id, "org/name": no segment of dots alone, so it never reads as "..".
REPO_ID = re.compile(r"^(?!\.+/)(?!.*/\.+$)[\w.-]+/[\w.-]+$")
MODELS_PLACE = "<models>"  # how the models folder is named to API clients
HUB = "hf:"  # "hf:org/name": a Hub repo id and never a folder, whatever exists on disk
_HASH_CACHE = ".verified.json"
# What a component repo (a motion adapter, a ControlNet) gives a pipeline: its config and
# full-precision safetensors weights, not the fp16, .bin and .pth copies such repos also keep.
_COMPONENT_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]


class Readiness(StrEnum):
    MISSING = "missing"  # at least one file is absent (or has the wrong size)
    PRESENT = "present"  # every file is there; hashes not checked yet
    VERIFIED = "verified"  # every file's sha256 matches the catalog
    CORRUPT = "corrupt"  # a file is there but its hash does not match


@dataclass
class ModelStatus:
    name: str
    readiness: Readiness
    directory: Path
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.readiness in (Readiness.PRESENT, Readiness.VERIFIED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "readiness": self.readiness.value,
            "ready": self.ready,
            "directory": str(self.directory),
            "missing": self.missing,
            "corrupt": self.corrupt,
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_hashed: dict[tuple[str, int, int], str] = {}


def _hash_once(path: Path, stamp: list[int]) -> str:
    """sha256, remembered per (path, size, mtime) for the life of the process."""
    key = (str(path), stamp[0], stamp[1])
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def _checksum(file: ModelFile) -> str:
    return f"sha256 {file.sha256}" if file.sha256 else "no checksum"


def _human(size: int | None) -> str:
    if not size:
        return "size unknown"
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


class ModelStore:
    def __init__(self, root: Path | None = None, catalog: Catalog | None = None) -> None:
        self.root = Path(root) if root is not None else get_settings().models_dir
        self.catalog = catalog if catalog is not None else load_catalog()

    # --- where files are -------------------------------------------------------------

    def directory(self, spec: ModelSpec) -> Path:
        if spec.builtin:
            assert spec.source.package is not None
            found = importlib.util.find_spec(spec.source.package)
            if found is None or not found.submodule_search_locations:
                raise ModelMissing(
                    f"model {spec.name!r} ships with the package {spec.source.package!r}, "
                    "which is not installed",
                    hint=f"pip install {spec.source.package}",
                )
            return Path(next(iter(found.submodule_search_locations)))
        return self.root / spec.name

    def file_path(self, spec: ModelSpec, file: ModelFile) -> Path:
        path = (self.directory(spec) / file.path).resolve()
        if not path.is_relative_to(self.directory(spec).resolve()):
            raise InvalidParams(f"model {spec.name}: file path {file.path!r} leaves its folder")
        return path

    def served_model(self, model: str) -> str:
        """A model a client named, as this server's loader should find it: a catalog name
        or a Hub repo id as given, a folder (relative names are taken inside the models
        folder) as its path there. A path outside the models folder is refused from its
        spelling alone: nothing is looked at, so a client learns nothing of the disk. A
        repo id comes back as `hf:org/name`, so no worker reads it as a relative folder."""
        if model in self.catalog.names() or REPO_ID.match(model.removeprefix(HUB)):
            return model if model.startswith(HUB) or model in self.catalog.names() else HUB + model
        relative = model.removeprefix(f"{MODELS_PLACE}/")
        root = os.path.normpath(self.root.absolute())
        folder = os.path.normpath(os.path.join(root, relative))
        if not model or os.path.commonpath([root, folder]) != root or folder == root:
            raise InvalidParams(
                f"model: {model[:200]!r} is not a catalog model, a Hub repo id or a folder in "
                "the server's models folder",
                hint="Name a catalog model (GET /api/models), or place the diffusers folder "
                f"in the server's models folder and give its name there ({MODELS_PLACE}/NAME).",
            )
        return folder

    def public_model(self, model: str) -> str:
        """A model input as a client would send it again (see `served_model`)."""
        return self.public_path(model.removeprefix(HUB))

    def public_path(self, text: str) -> str:
        """`text` with the models folder spelt as `<models>`: clients see no server path."""
        for spelling in sorted({str(self.root), str(self.root.resolve())}, key=len, reverse=True):
            text = text.replace(spelling, MODELS_PLACE)
        return text

    # --- readiness -------------------------------------------------------------------

    def status(self, name: str, *, verify: bool = False) -> ModelStatus:
        """Missing / present / verified; `verify` hashes files not already verified."""
        spec = self.catalog.get(name)
        directory = self.directory(spec)
        if spec.snapshot:
            wanted = ["model_index.json"]
            wanted += [f"{part}/{file}" for part in spec.components for file in _COMPONENT_FILES]
            missing = [path for path in wanted if not (directory / path).is_file()]
            return ModelStatus(
                name,
                Readiness.MISSING if missing else Readiness.PRESENT,
                directory,
                missing=missing,
            )
        cache = self._load_hash_cache(spec)
        verify = verify or spec.builtin  # built-ins are a few MB: always check them
        missing, corrupt, unverified = [], [], False
        for file in spec.files:
            path = self.file_path(spec, file)
            if not path.is_file() or (file.size and path.stat().st_size != file.size):
                missing.append(file.path)
                continue
            if file.sha256 is None:
                unverified = True
                continue
            known = cache.get(file.path)
            stamp = [path.stat().st_size, path.stat().st_mtime_ns]
            if known and known["stamp"] == stamp:
                digest = known["sha256"]
            elif verify:
                digest = _hash_once(path, stamp)
                cache[file.path] = {"stamp": stamp, "sha256": digest}
            else:
                unverified = True
                continue
            if digest != file.sha256:
                corrupt.append(file.path)
        if verify and not spec.builtin:
            self._save_hash_cache(spec, cache)
        if missing:
            readiness = Readiness.MISSING
        elif corrupt:
            readiness = Readiness.CORRUPT
        elif unverified:
            readiness = Readiness.PRESENT
        else:
            readiness = Readiness.VERIFIED
        return ModelStatus(name, readiness, directory, missing, corrupt)

    def require(self, name: str) -> dict[str, Path]:
        """Paths of a model's files, or ModelMissing saying exactly what to place where."""
        spec = self.catalog.get(name)
        state = self.status(name)
        if state.readiness == Readiness.CORRUPT:
            raise ModelMissing(
                f"model {name!r}: {', '.join(state.corrupt)} does not match its sha256",
                hint=f"Delete it and run `vfx models pull {name}`.",
            )
        if not state.ready:
            raise ModelMissing(self._placement(spec, state.missing), hint=self._pull_hint(spec))
        return {f.path: self.file_path(spec, f) for f in spec.files}

    def _placement(self, spec: ModelSpec, missing: list[str]) -> str:
        """Which file to fetch from where, and the exact path to put it at."""
        if spec.snapshot:
            directory = self.directory(spec)
            parts = "".join(
                f", and {repo} into {directory / part}" for part, repo in spec.components.items()
            )
            return (
                f"model {spec.name!r} is not downloaded: fetch the Hugging Face repo "
                f"{spec.source.repo} into {directory}{parts}"
            )
        files = [file for file in spec.files if file.path in missing]
        urls = [spec.url_for(file) or "" for file in files]
        # Several files from one place: name the place and the folder once, so the message
        # stays whole (errors are cut at 1000 characters).
        folders = {url.rpartition("/")[0] for url in urls}
        if len(files) > 1 and len(folders) == 1 and all(urls):
            base = folders.pop() + "/"
            lines = [
                f"model {spec.name!r} is missing {len(files)} file(s): download each from "
                f"{base}<name there> and place it in {self.directory(spec)}:"
            ]
            lines += [
                f"  {url[len(base) :]} -> {file.path} ({_human(file.size)}, {_checksum(file)})"
                for file, url in zip(files, urls, strict=True)
            ]
            return "\n".join(lines)
        lines = [f"model {spec.name!r} is missing {len(missing)} file(s):"]
        for file, url in zip(files, urls, strict=True):
            lines.append(
                f"  download {url or 'its source'} ({_human(file.size)}, {_checksum(file)}) "
                f"and place it at {self.file_path(spec, file)}"
            )
        return "\n".join(lines)

    @staticmethod
    def _pull_hint(spec: ModelSpec) -> str:
        return (
            f"Run `vfx models pull {spec.name}` when online, or place the file(s) as above "
            f"and run `vfx models verify {spec.name}`."
        )

    def _load_hash_cache(self, spec: ModelSpec) -> dict[str, Any]:
        if spec.builtin:
            return {}
        path = self.directory(spec) / _HASH_CACHE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_hash_cache(self, spec: ModelSpec, cache: dict[str, Any]) -> None:
        if not cache:
            return
        path = self.directory(spec) / _HASH_CACHE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(cache, indent=1))

    # --- downloads -------------------------------------------------------------------

    def pull(self, name: str, progress: Progress | None = None) -> ModelStatus:
        """Download what is missing (resuming partial files), then verify every hash."""
        spec = self.catalog.get(name)
        state = self.status(name, verify=True)
        if state.readiness == Readiness.VERIFIED or (state.ready and spec.builtin):
            return state
        if spec.builtin:
            raise ModelMissing(
                f"built-in model {name!r} is damaged: {', '.join(state.missing + state.corrupt)}",
                hint=f"Reinstall the package: pip install --force-reinstall {spec.source.package}",
            )
        if get_settings().is_offline:
            raise ModelMissing(
                "offline (VFX_OFFLINE or HF_HUB_OFFLINE is set): "
                + self._placement(spec, state.missing + state.corrupt),
                hint=self._pull_hint(spec),
            )
        if spec.snapshot:
            self._pull_snapshot(spec)
            return self.status(name)
        for file in spec.files:
            if file.path in state.missing or file.path in state.corrupt:
                self._pull_file(spec, file, progress)
        final = self.status(name, verify=True)
        if final.readiness == Readiness.CORRUPT:
            for bad in final.corrupt:
                self.file_path(spec, next(f for f in spec.files if f.path == bad)).unlink()
            raise ModelMissing(
                f"model {name!r}: downloaded {', '.join(final.corrupt)} does not match its "
                "sha256 and was deleted",
                hint="The source may have changed; report it, or place a known-good copy by hand.",
            )
        return final

    def _pull_file(self, spec: ModelSpec, file: ModelFile, progress: Progress | None) -> None:
        url = spec.url_for(file)
        if url is None:
            raise ModelMissing(f"model {spec.name!r}: no download source for {file.path}")
        target = self.file_path(spec, file)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            check_reachable(url)
            if spec.source.kind == "huggingface" and file.url is None:
                self._pull_hf_file(spec, file, target)
            else:
                download(
                    url,
                    target,
                    expected_size=file.size,
                    progress=progress,
                    timeout=get_settings().download_timeout_s,
                )
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelMissing(
                f"could not download {url} ({reason}). " + self._placement(spec, [file.path]),
                hint=self._pull_hint(spec),
            ) from exc

    def _pull_hf_file(self, spec: ModelSpec, file: ModelFile, target: Path) -> None:
        """huggingface_hub handles auth tokens, Xet storage and resuming for Hub files."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        staging = self.directory(spec) / ".hf"
        try:
            fetched = hf_hub_download(
                repo_id=str(spec.source.repo),
                filename=file.remote_path,
                revision=spec.source.revision,
                local_dir=staging,
                etag_timeout=get_settings().download_timeout_s,
            )
        except (LocalEntryNotFoundError, HfHubHTTPError) as exc:
            raise OSError(str(exc)) from exc
        Path(fetched).replace(target)

    def _pull_snapshot(self, spec: ModelSpec) -> None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        directory = self.directory(spec)
        # The base repo (its needed files), then each component repo into its folder.
        pulls = [(str(spec.source.repo), directory, spec.snapshot_patterns)]
        pulls += [
            (repo, directory / part, _COMPONENT_FILES) for part, repo in spec.components.items()
        ]
        for repo, local_dir, patterns in pulls:
            revision = spec.source.revision if local_dir == directory else None
            try:
                check_reachable(f"https://huggingface.co/{repo}")
                snapshot_download(
                    repo_id=repo, revision=revision, local_dir=local_dir, allow_patterns=patterns
                )
            except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
                raise ModelMissing(
                    f"could not download {repo} ({exc}). " + self._placement(spec, []),
                    hint=self._pull_hint(spec),
                ) from exc


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after a client's minute of retries, when the host is unreachable."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname or "", port), timeout=timeout):
        pass


def download(
    url: str,
    target: Path,
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
    timeout: float = 20.0,
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Fetch `url` to `target` through `<target>.part`, resuming with an HTTP Range request."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if expected_size and have > expected_size:
        part.unlink()
        have = 0
    if expected_size and have == expected_size:  # finished before a crash; nothing to fetch
        part.replace(target)
        return target
    request = urllib.request.Request(url, headers={"User-Agent": "vfxmocap"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with opener(request, timeout=timeout) as response:
        resumed = have > 0 and getattr(response, "status", 200) == 206
        total = _total_size(response, have if resumed else 0) or expected_size
        if progress is not None:
            progress.stage(f"download {target.name}", total)
            progress.advance(have if resumed else 0)
        with part.open("ab" if resumed else "wb") as fh:
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                if progress is not None:
                    progress.advance(len(chunk))
    size = part.stat().st_size
    if expected_size and size != expected_size:
        raise OSError(
            f"download ended at {size} of {expected_size} bytes; run pull again to resume"
        )
    part.replace(target)
    return target


def _total_size(response: Any, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None
