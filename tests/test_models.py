"""The model catalog and store: readiness, hash checks, resumable pulls, honest offline errors.

Downloads are real HTTP against a server started in the test on 127.0.0.1, serving the
bytes of a real file (scikit-image's astronaut.png).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import run_vfx
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import InvalidParams, ModelMissing
from vfxmocap.models import store as store_module
from vfxmocap.models.catalog import Catalog, load_catalog, parse_catalog
from vfxmocap.models.store import ModelStore, Readiness
from vfxmocap.samples import sample_path

NAME = "astro-test"
FILE = "weights/astronaut.png"
_OUR_VARS = ("VFX_", "HF_HUB_OFFLINE")


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Online, no user config, and no proxy between urllib and the local test server."""
    for key in list(os.environ):
        if key.startswith(_OUR_VARS):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VFX_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("VFX_MODELS_DIR", str(tmp_path / "default-models"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reload_settings()


# --- a real local HTTP server ---------------------------------------------------------------


@dataclass
class FileServer:
    payload: bytes
    url: str = ""
    honour_range: bool = True
    ranges: list[str | None] = field(default_factory=list)  # Range header of each GET


def _handler(server: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked = self.headers.get("Range")
            server.ranges.append(asked)
            data, start = server.payload, 0
            match = re.fullmatch(r"bytes=(\d+)-", asked or "")
            if match and server.honour_range:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def payload() -> bytes:
    return sample_path("astronaut").read_bytes()


@pytest.fixture
def server(payload: bytes) -> Iterator[FileServer]:
    state = FileServer(payload)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/astronaut.png"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def tiny_catalog(url: str, sha256: str, size: int) -> Catalog:
    return parse_catalog(f"""
[[models]]
name = "{NAME}"
task = "test"
backend = "onnx"
description = "A real PNG served over local HTTP."
license = "CC0-1.0"
memory_gb = 0.0
source = {{ kind = "url" }}
files = [{{ path = "{FILE}", url = "{url}", sha256 = "{sha256}", size = {size} }}]
""")


@pytest.fixture
def store(tmp_path: Path, server: FileServer, payload: bytes) -> ModelStore:
    catalog = tiny_catalog(server.url, hashlib.sha256(payload).hexdigest(), len(payload))
    return ModelStore(root=tmp_path / "models", catalog=catalog)


def target_of(store: ModelStore) -> Path:
    spec = store.catalog.get(NAME)
    return store.file_path(spec, spec.files[0])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the shipped catalog --------------------------------------------------------------------


def test_shipped_catalog_loads_with_unique_names() -> None:
    catalog = load_catalog()
    names = catalog.names()
    assert len(names) >= 10
    assert len(names) == len(set(names)) == len(catalog)
    assert "inswapper-128" in names and "mediapipe-pose" in names


def test_every_file_of_the_shipped_catalog_has_a_sha256_and_size() -> None:
    for spec in load_catalog():
        if spec.snapshot:
            continue
        if spec.unverified:  # says why, in the catalog (no published hash could be read)
            assert all(f.sha256 is None and f.size is None for f in spec.files), spec.name
            continue
        assert spec.files, spec.name
        for file in spec.files:
            assert file.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", file.sha256), (
                spec.name,
                file.path,
            )
            assert file.size is not None and file.size > 0, (spec.name, file.path)


def test_every_downloadable_model_has_a_license_and_a_download_url() -> None:
    for spec in load_catalog():
        if spec.builtin:
            continue
        assert spec.license.strip(), spec.name
        if spec.snapshot:
            assert spec.source.kind == "huggingface" and spec.source.repo, spec.name
        for file in spec.files:
            url = spec.url_for(file)
            assert url is not None and url.startswith("https://"), (spec.name, file.path)
            assert url.endswith(file.remote_path)


def test_huggingface_url_uses_repo_revision_and_remote_path() -> None:
    spec = load_catalog().get("scrfd-10g")
    assert spec.url_for(spec.files[0]) == (
        "https://huggingface.co/public-data/insightface/resolve/main/models/buffalo_l/det_10g.onnx"
    )


def test_mediapipe_builtins_are_verified_from_the_installed_wheel(tmp_path: Path) -> None:
    store = ModelStore(root=tmp_path)
    builtins = [spec for spec in store.catalog if spec.builtin]
    assert builtins and all(spec.source.package == "mediapipe" for spec in builtins)
    for spec in builtins:
        status = store.status(spec.name)  # built-ins are always hashed
        assert status.readiness is Readiness.VERIFIED, status.to_dict()
        assert status.directory.name == "mediapipe"
        assert not status.directory.is_relative_to(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written into the store for built-ins


def test_pulling_a_builtin_needs_no_network(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "check_reachable", _no_network)
    status = ModelStore(root=tmp_path).pull("mediapipe-hands")
    assert status.readiness is Readiness.VERIFIED


def test_downloadable_model_is_missing_in_an_empty_store(tmp_path: Path) -> None:
    status = ModelStore(root=tmp_path).status("inswapper-128", verify=True)
    assert status.readiness is Readiness.MISSING
    assert not status.ready
    assert status.missing == ["inswapper_128.onnx"]
    assert status.directory == tmp_path / "inswapper-128"


def test_snapshot_model_is_missing_in_an_empty_store(tmp_path: Path) -> None:
    status = ModelStore(root=tmp_path).status("wan2.1-t2v-1.3b")
    assert status.readiness is Readiness.MISSING
    assert status.missing == ["model_index.json"]


def test_store_root_defaults_to_vfx_models_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VFX_MODELS_DIR", str(tmp_path / "elsewhere"))
    reload_settings()
    assert ModelStore().root == tmp_path / "elsewhere"


def test_unknown_model_is_invalid_params_listing_known_models(tmp_path: Path) -> None:
    with pytest.raises(InvalidParams, match="unknown model 'no-such-model'") as info:
        ModelStore(root=tmp_path).status("no-such-model")
    assert "inswapper-128" in info.value.hint


# --- parsing catalogs -----------------------------------------------------------------------

_ENTRY = """
[[models]]
name = "{name}"
task = "t"
backend = "onnx"
description = "d"
license = "MIT"
memory_gb = 0.1
source = {source}
files = [{file}]
"""
_SHA = "0" * 64


def _entry(
    name: str = "m",
    source: str = '{ kind = "url" }',
    file: str = f'{{ path = "m.onnx", url = "https://x/m.onnx", sha256 = "{_SHA}" }}',
) -> str:
    return _ENTRY.format(name=name, source=source, file=file)


def test_parse_catalog_accepts_a_well_formed_entry() -> None:
    catalog = parse_catalog(_entry())
    spec = catalog.get("m")
    assert spec.url_for(spec.files[0]) == "https://x/m.onnx"
    assert catalog.for_task("t") == [spec]


def test_parse_catalog_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        parse_catalog(_entry("dup") + _entry("dup"))


def test_parse_catalog_rejects_url_source_file_without_url() -> None:
    with pytest.raises(ValidationError, match="needs a url"):
        parse_catalog(_entry(file='{ path = "m.onnx" }'))


@pytest.mark.parametrize(
    ("source", "file"),
    [
        ('{ kind = "url" }', '{ path = "m.onnx", url = "https://x", sha256 = "ABC" }'),
        ('{ kind = "url" }', '{ path = "m.onnx", url = "https://x", size = 0 }'),
        ('{ kind = "huggingface" }', '{ path = "m.onnx" }'),
        ('{ kind = "builtin" }', '{ path = "m.onnx" }'),
        ('{ kind = "ftp" }', '{ path = "m.onnx" }'),
    ],
    ids=["bad-sha256", "zero-size", "hf-without-repo", "builtin-without-package", "bad-kind"],
)
def test_parse_catalog_rejects_incomplete_entries(source: str, file: str) -> None:
    with pytest.raises(ValidationError):
        parse_catalog(_entry(source=source, file=file))


def test_parse_catalog_rejects_a_model_without_files() -> None:
    text = _entry().replace(
        f'files = [{{ path = "m.onnx", url = "https://x/m.onnx", sha256 = "{_SHA}" }}]', ""
    )
    with pytest.raises(ValidationError, match="lists no files"):
        parse_catalog(text)


def test_file_path_cannot_leave_the_model_folder(tmp_path: Path) -> None:
    catalog = parse_catalog(_entry(file='{ path = "../../evil.onnx", url = "https://x/e" }'))
    store = ModelStore(root=tmp_path, catalog=catalog)
    spec = catalog.get("m")
    with pytest.raises(InvalidParams, match="leaves its folder"):
        store.file_path(spec, spec.files[0])


# --- pulls over real HTTP -------------------------------------------------------------------


def test_pull_downloads_verifies_and_require_returns_the_path(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    status = store.pull(NAME)

    target = target_of(store)
    assert status.readiness is Readiness.VERIFIED and status.ready
    assert target.read_bytes() == payload
    assert not target.with_name(target.name + ".part").exists()
    assert server.ranges == [None]  # one plain GET
    assert store.require(NAME) == {FILE: target}


def test_pull_of_a_verified_model_does_not_download_again(
    store: ModelStore, server: FileServer
) -> None:
    store.pull(NAME)
    assert store.pull(NAME).readiness is Readiness.VERIFIED
    assert len(server.ranges) == 1


def test_pull_resumes_a_partial_download_with_a_range_request(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    half = len(payload) // 2
    part = target.with_name(target.name + ".part")
    part.write_bytes(payload[:half])

    status = store.pull(NAME)

    assert server.ranges == [f"bytes={half}-"]
    assert status.readiness is Readiness.VERIFIED
    assert target.read_bytes() == payload
    assert not part.exists()


def test_pull_starts_over_when_the_server_ignores_range(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    server.honour_range = False
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(payload[:1000])

    assert store.pull(NAME).readiness is Readiness.VERIFIED
    assert server.ranges == ["bytes=1000-"]
    assert target.read_bytes() == payload  # rewritten from byte 0, not appended


def test_pull_discards_a_part_file_larger_than_the_model(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(payload + b"trailing junk")

    assert store.pull(NAME).readiness is Readiness.VERIFIED
    assert server.ranges == [None]
    assert target.read_bytes() == payload


def test_pull_finishes_when_the_part_file_is_already_complete(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(payload)

    assert store.pull(NAME).readiness is Readiness.VERIFIED
    assert target.read_bytes() == payload


def test_wrong_content_of_the_right_size_is_corrupt(store: ModelStore, payload: bytes) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.write_bytes(bytes(reversed(payload)))

    assert store.status(NAME).readiness is Readiness.PRESENT  # not hashed yet
    status = store.status(NAME, verify=True)
    assert status.readiness is Readiness.CORRUPT
    assert status.corrupt == [FILE] and not status.ready
    with pytest.raises(ModelMissing, match="does not match its sha256") as info:
        store.require(NAME)
    assert f"vfx models pull {NAME}" in info.value.hint


def test_pull_replaces_a_corrupt_file(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.write_bytes(bytes(reversed(payload)))

    assert store.pull(NAME).readiness is Readiness.VERIFIED
    assert target.read_bytes() == payload
    assert server.ranges == [None]


def test_wrong_size_counts_as_missing(store: ModelStore, payload: bytes) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.write_bytes(payload[:-1])
    status = store.status(NAME, verify=True)
    assert status.readiness is Readiness.MISSING and status.missing == [FILE]


def test_sha256_mismatch_after_download_deletes_the_file(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    store = ModelStore(
        root=tmp_path / "models", catalog=tiny_catalog(server.url, "a" * 64, len(payload))
    )

    with pytest.raises(ModelMissing, match="does not match its sha256 and was deleted"):
        store.pull(NAME)

    target = target_of(store)
    assert len(server.ranges) == 1  # it did download
    assert not target.exists()
    assert not target.with_name(target.name + ".part").exists()
    with pytest.raises(ModelMissing):
        store.require(NAME)


def test_require_on_a_missing_model_says_what_to_place_where(
    store: ModelStore, server: FileServer, payload: bytes
) -> None:
    with pytest.raises(ModelMissing) as info:
        store.require(NAME)

    message = info.value.message
    assert str(target_of(store)) in message
    assert hashlib.sha256(payload).hexdigest() in message
    assert server.url in message
    assert f"vfx models verify {NAME}" in info.value.hint
    assert info.value.exit_code == 4
    assert server.ranges == []  # require never downloads


# --- offline and unreachable ----------------------------------------------------------------


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the network was touched")


@pytest.mark.parametrize(("var", "value"), [("VFX_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1")])
def test_offline_pull_fails_at_once_naming_the_destination(
    store: ModelStore, server: FileServer, monkeypatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    reload_settings()
    monkeypatch.setattr(store_module, "check_reachable", _no_network)

    start = time.monotonic()
    with pytest.raises(ModelMissing, match="offline") as info:
        store.pull(NAME)

    assert time.monotonic() - start < 1.0
    assert str(target_of(store)) in info.value.message
    assert server.ranges == []


def test_unreachable_host_fails_quickly(tmp_path: Path, payload: bytes) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x"
    store = ModelStore(
        root=tmp_path / "models",
        catalog=tiny_catalog(url, hashlib.sha256(payload).hexdigest(), len(payload)),
    )

    start = time.monotonic()
    with pytest.raises(ModelMissing, match="could not download") as info:
        store.pull(NAME)

    assert time.monotonic() - start < 5.0
    assert url in info.value.message
    assert str(target_of(store)) in info.value.message
    assert not target_of(store).exists()


# --- the hash cache -------------------------------------------------------------------------


def test_verified_hashes_are_remembered_across_store_instances(
    store: ModelStore, payload: bytes, monkeypatch
) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.write_bytes(payload)
    assert store.status(NAME).readiness is Readiness.PRESENT  # never hashed
    assert store.status(NAME, verify=True).readiness is Readiness.VERIFIED
    cache = target.parents[1] / ".verified.json"
    assert json.loads(cache.read_text())[FILE]["sha256"] == hashlib.sha256(payload).hexdigest()

    # A new process: no in-memory memo, and hashing is forbidden.
    monkeypatch.setattr(store_module, "_hashed", {})
    monkeypatch.setattr(store_module, "sha256_file", _no_hashing)
    fresh = ModelStore(root=store.root, catalog=store.catalog)
    assert fresh.status(NAME).readiness is Readiness.VERIFIED
    assert fresh.status(NAME, verify=True).readiness is Readiness.VERIFIED


def test_hash_cache_is_ignored_once_the_file_changes(store: ModelStore, payload: bytes) -> None:
    target = target_of(store)
    target.parent.mkdir(parents=True)
    target.write_bytes(payload)
    assert store.status(NAME, verify=True).readiness is Readiness.VERIFIED

    target.write_bytes(bytes(reversed(payload)))  # same size, new content
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))

    assert store.status(NAME).readiness is Readiness.PRESENT
    assert store.status(NAME, verify=True).readiness is Readiness.CORRUPT


def _no_hashing(path: Path) -> str:
    raise AssertionError(f"{path} was hashed again")


# --- the CLI --------------------------------------------------------------------------------


def run_cli(*args: str, models_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OUR_VARS)}
    env.update(
        VFX_MODELS_DIR=str(models_dir), VFX_CONFIG=str(models_dir / "no-config.toml"), **extra
    )
    return run_vfx(*args, base=env, timeout=60)


def test_cli_models_list_json(tmp_path: Path) -> None:
    result = run_cli("models", "list", "--json", models_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == load_catalog().names()
    assert rows["mediapipe-pose"]["readiness"] == "verified" and rows["mediapipe-pose"]["ready"]
    inswapper = rows["inswapper-128"]
    assert inswapper["readiness"] == "missing" and inswapper["ready"] is False
    assert inswapper["directory"] == str(tmp_path / "inswapper-128")
    assert inswapper["size"] == 554253681
    assert inswapper["license"].startswith("InsightFace")


def test_cli_models_verify_missing_model_exits_4(tmp_path: Path) -> None:
    result = run_cli("models", "verify", "inswapper-128", models_dir=tmp_path)
    assert result.returncode == 4
    assert "inswapper-128: missing" in result.stdout


def test_cli_models_verify_builtin_exits_0(tmp_path: Path) -> None:
    result = run_cli("models", "verify", "mediapipe-face-mesh", models_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mediapipe-face-mesh: verified" in result.stdout


def test_cli_offline_pull_exits_4_with_the_placement_path(tmp_path: Path) -> None:
    result = run_cli("models", "pull", "inswapper-128", models_dir=tmp_path, VFX_OFFLINE="1")

    assert result.returncode == 4
    assert str(tmp_path / "inswapper-128" / "inswapper_128.onnx") in result.stderr
    assert "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "inswapper-128" / "inswapper_128.onnx").exists()


def test_cli_error_prints_a_path_with_brackets_exactly(tmp_path: Path) -> None:
    """Paths are data, not rich markup: '[old]' or '[/]' in a folder name must survive."""
    models = tmp_path / "models [old]" / "x[/]y"
    result = run_cli("models", "pull", "inswapper-128", models_dir=models, VFX_OFFLINE="1")
    assert result.returncode == 4
    assert str(models / "inswapper-128" / "inswapper_128.onnx") in result.stderr


# --- the model cache ---------------------------------------------------------------------


def test_sessions_stay_warm_and_the_budget_evicts_the_oldest(tmp_path: Path) -> None:
    from tests import onnx_models
    from vfxmocap.models.cache import ModelCache
    from vfxmocap.models.onnx_runtime import session

    swapper = onnx_models.inswapper(tmp_path / "swapper.onnx")
    arcface = onnx_models.arcface(tmp_path / "arcface.onnx")
    sizes = [1.5 * p.stat().st_size / 2**30 for p in (swapper, arcface)]
    cache = ModelCache(budget_gb=max(sizes) * 1.01)  # room for one of the two
    assert sum(sizes) > cache.budget_gb
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vfxmocap.models.onnx_runtime.model_cache", lambda: cache)
        first = session(swapper)
        assert session(swapper) is first and cache.hits == 1  # warm: not loaded again
        other = session(arcface)
        assert other is not first and cache.evictions == 1  # the swapper made room
        assert [k[1] for k in cache.cached()] == [str(arcface.resolve())]
        assert session(swapper) is not first  # loaded again after eviction
        out = first.run(None, {i.name: _zeros(i) for i in first.get_inputs()})
        assert out[0].shape[0] == 1  # an evicted session still works for whoever holds it


def _zeros(arg):  # type: ignore[no-untyped-def]
    import numpy as np

    shape = [d if isinstance(d, int) else 1 for d in arg.shape]
    return np.zeros(shape, np.float32)


def test_a_model_larger_than_the_budget_is_used_not_kept() -> None:
    from vfxmocap.models.cache import ModelCache

    cache = ModelCache(budget_gb=1.0)
    assert cache.get("big", lambda: "weights", 2.0) == "weights"
    assert cache.cached() == [] and cache.misses == 1
    cache.get("a", lambda: 1, 0.4)
    cache.get("b", lambda: 2, 0.4)
    cache.get("a", lambda: 3, 0.4)  # a is now the most recent
    cache.get("c", lambda: 4, 0.4)
    assert cache.cached() == ["a", "c"] and cache.used_gb == pytest.approx(0.8)


@pytest.mark.timeout(60)
def test_racing_misses_load_a_model_once_and_other_keys_do_not_wait(tmp_path: Path) -> None:
    from tests import onnx_models
    from vfxmocap.models.cache import ModelCache
    from vfxmocap.models.onnx_runtime import _load

    path = onnx_models.arcface(tmp_path / "arcface.onnx")
    cache = ModelCache(budget_gb=1.0)
    entered, release = threading.Event(), threading.Event()
    loads: list[object] = []

    def slow_load() -> object:
        entered.set()
        release.wait(10)  # a model that takes seconds to load
        loads.append(_load(path, [("CPUExecutionProvider", {})]))
        return loads[-1]

    got: list[object] = []
    first = threading.Thread(target=lambda: got.append(cache.get("arcface", slow_load, 0.1)))
    second = threading.Thread(target=lambda: got.append(cache.get("arcface", slow_load, 0.1)))
    first.start()
    assert entered.wait(10)
    second.start()
    assert cache.get("other", lambda: "other model", 0.1) == "other model"  # not blocked
    time.sleep(0.2)  # the second miss arrives while the first is still loading
    release.set()
    first.join(10)
    second.join(10)
    assert len(loads) == 1 and len(got) == 2 and got[0] is got[1] is loads[0]
    assert cache.misses == 2 and cache.hits == 1  # "arcface" once, "other" once; one waited


def test_a_failed_load_is_not_shared_the_next_caller_loads_again() -> None:
    from vfxmocap.models.cache import ModelCache

    cache = ModelCache(budget_gb=1.0)
    with pytest.raises(OSError, match="disk gone"):
        cache.get("k", lambda: (_ for _ in ()).throw(OSError("disk gone")), 0.1)
    assert cache.get("k", lambda: "loaded", 0.1) == "loaded"


# --- what a failure of a session means ----------------------------------------------------


def _ort_out_of_memory(tmp_path: Path) -> Exception:
    """The exception ONNX Runtime raises when it really runs out of memory."""
    import numpy as np
    import onnxruntime as ort

    from tests import onnx_models

    path = onnx_models.greedy_enhancer(tmp_path / "greedy.onnx")
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        raw.run(None, {"input": np.zeros((1, 3, 512, 512), np.float32)})
    except Exception as exc:  # noqa: BLE001 -- the very object under test
        return exc
    raise AssertionError("the greedy model did not run out of memory")


def test_out_of_memory_of_every_runtime_is_insufficient_memory(tmp_path: Path) -> None:
    import onnxruntime.capi.onnxruntime_pybind11_state as ort_errors
    import torch

    from vfxmocap.core.errors import InsufficientMemory, insufficient_memory

    try:
        torch.empty(2**40)  # 4 TB on the host
    except RuntimeError as exc:
        torch_cpu = exc
    cases = {
        "onnxruntime": _ort_out_of_memory(tmp_path),
        "torch cpu": torch_cpu,
        "cuda": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "mps": RuntimeError("MPS backend out of memory (MPS allocated: 17.0 GB)"),
        "ort cuda": ort_errors.RuntimeException("CUDA failure 2: out of memory ; GPU=0"),
        "ort bad_alloc": ort_errors.Fail("std::bad_alloc"),
        "host": MemoryError(),
    }
    for name, exc in cases.items():
        mapped = insufficient_memory(exc, "running the model")
        assert isinstance(mapped, InsufficientMemory), name
        assert mapped.retryable and mapped.message.startswith("running the model: out of memory")
    for other in (RuntimeError("size mismatch"), ort_errors.InvalidProtobuf("Protobuf parsing")):
        assert insufficient_memory(other, "x") is None


def test_an_enhancer_out_of_memory_is_insufficient_memory(tmp_path: Path) -> None:
    import numpy as np

    from tests import onnx_models
    from vfxmocap.core.errors import InsufficientMemory
    from vfxmocap.processors.face_swap.enhancer import FaceEnhancer

    enhancer = FaceEnhancer(onnx_models.greedy_enhancer(tmp_path / "gfpgan.onnx"))
    with pytest.raises(InsufficientMemory) as caught:
        enhancer.restore(np.zeros((512, 512, 3), np.uint8))
    assert "pull" not in caught.value.hint.lower() and "memory" in caught.value.hint


def test_a_corrupt_model_file_says_pull_it_again(tmp_path: Path) -> None:
    from tests import onnx_models
    from vfxmocap.models.onnx_runtime import session

    path = onnx_models.arcface(tmp_path / "arcface.onnx")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(ModelMissing, match="not a loadable ONNX model") as caught:
        session(path)
    assert "pull the model again" in caught.value.hint


def test_out_of_memory_while_loading_is_not_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    from tests import onnx_models
    from vfxmocap.core.errors import InsufficientMemory
    from vfxmocap.models.onnx_runtime import session

    oom = _ort_out_of_memory(tmp_path)
    path = onnx_models.arcface(tmp_path / "arcface.onnx")

    def create(*args: object, **kwargs: object) -> None:
        raise oom  # the device fills up while the session allocates its weights

    monkeypatch.setattr(ort, "InferenceSession", create)
    with pytest.raises(InsufficientMemory) as caught:
        session(path)
    assert "pull" not in caught.value.hint.lower()


def test_a_device_failure_while_loading_is_a_device_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort
    import onnxruntime.capi.onnxruntime_pybind11_state as ort_errors

    from tests import onnx_models
    from vfxmocap.core.errors import DeviceError, InsufficientMemory
    from vfxmocap.models.onnx_runtime import session

    path = onnx_models.arcface(tmp_path / "arcface.onnx")

    def create(*args: object, **kwargs: object) -> None:
        raise ort_errors.EPFail("CUDA failure 100: no CUDA-capable device is detected")

    monkeypatch.setattr(ort, "InferenceSession", create)
    with pytest.raises(DeviceError) as caught:
        session(path)
    assert not isinstance(caught.value, InsufficientMemory)
    assert "no CUDA-capable device" in caught.value.message
    assert "pull" not in caught.value.hint.lower() and "--device cpu" in caught.value.hint
