"""One catalog of every model vfxmocap can use, declared as data in `catalog.toml`."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InvalidParams

ModelRuntime = Literal["onnx", "torch", "diffusers", "mediapipe"]


class ModelFile(BaseModel):
    """One file of a model, relative to the model's folder (or to the package for built-ins)."""

    path: str
    remote: str | None = None  # path inside the source repo when it differs from `path`
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, gt=0)
    url: str | None = None  # a direct URL; otherwise derived from the model's source

    @property
    def remote_path(self) -> str:
        return self.remote or self.path


class ModelSource(BaseModel):
    """Where files come from: inside an installed package, a Hugging Face repo, or URLs."""

    kind: Literal["builtin", "huggingface", "url"]
    package: str | None = None
    repo: str | None = None
    revision: str = "main"

    @model_validator(mode="after")
    def _complete(self) -> ModelSource:
        if self.kind == "builtin" and not self.package:
            raise ValueError("a builtin source names its package")
        if self.kind == "huggingface" and not self.repo:
            raise ValueError("a huggingface source names its repo")
        return self


class ModelSpec(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    task: str
    backend: ModelRuntime  # what loads and runs the files
    description: str
    license: str
    source: ModelSource
    files: list[ModelFile] = Field(default_factory=list)
    snapshot: bool = False  # a whole Hugging Face repo (diffusers pipelines)
    # The repo files a snapshot needs (glob patterns); None: all of them.
    snapshot_patterns: list[str] | None = None
    memory_gb: float = Field(ge=0)
    # Diffusers pipelines: peak accelerator GB per offload tier (none, model, group,
    # sequential) in half precision at the family's reference size; the planner reads them.
    offload_gb: dict[str, float] = Field(default_factory=dict)
    # The same with 8-bit weights in the denoiser and text encoders (tiers none and model):
    # the planner offers them where a quantization backend is installed.
    quantized_gb: dict[str, float] = Field(default_factory=dict)
    pipeline: str | None = None  # diffusers: model_index.json's `_class_name`
    # Components from other Hugging Face repos (name -> repo id), each fetched into the
    # snapshot's folder of that name and handed to `pipeline` on loading, which then replaces
    # the base repo's own class: AnimateDiff's motion adapter (and a ControlNet) beside a
    # Stable Diffusion 1.5 base.
    components: dict[str, str] = Field(default_factory=dict)
    # A snapshot's weights in GB at bf16 (published parameter counts x 2 bytes): about what
    # its download and disk take (repos that keep float32 copies take more).
    weights_gb: float | None = Field(None, ge=0)
    # Why files carry no sha256 / size (none published where they could be read): said in
    # the catalog, not left to chance; such files are "present", never "verified".
    unverified: str | None = None

    @model_validator(mode="after")
    def _has_files(self) -> ModelSpec:
        if not self.files and not self.snapshot:
            raise ValueError(f"model {self.name} lists no files")
        if self.components and not (self.snapshot and self.pipeline):
            raise ValueError(f"model {self.name}: components need snapshot and pipeline")
        if self.source.kind == "url" and any(f.url is None for f in self.files):
            raise ValueError(f"model {self.name}: every file of a url source needs a url")
        return self

    @property
    def builtin(self) -> bool:
        return self.source.kind == "builtin"

    def url_for(self, file: ModelFile) -> str | None:
        if file.url:
            return file.url
        if self.source.kind == "huggingface":
            return f"https://huggingface.co/{self.source.repo}/resolve/{self.source.revision}/{file.remote_path}"
        return None

    @property
    def download_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


class Catalog:
    """The models by name; the only list of models in the project."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"model {spec.name} is declared twice")
            self._specs[spec.name] = spec

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise InvalidParams(
                f"unknown model {name!r}",
                hint=f"Known models: {', '.join(self._specs)}.",
            ) from None

    def for_task(self, task: str) -> list[ModelSpec]:
        return [s for s in self._specs.values() if s.task == task]


def parse_catalog(text: str) -> Catalog:
    data = tomllib.loads(text)
    return Catalog([ModelSpec.model_validate(entry) for entry in data.get("models", [])])


def load_catalog() -> Catalog:
    """The catalog shipped with the package, plus the user's extra catalog (VFX_CATALOG),
    whose entries add models or replace built-in ones of the same name."""
    extra = get_settings().catalog
    return _load(str(extra) if extra else None)


@lru_cache(maxsize=4)
def _load(extra: str | None) -> Catalog:
    text = resources.files("vfxmocap.models").joinpath("catalog.toml").read_text("utf-8")
    specs = {s.name: s for s in parse_catalog(text)}
    if extra:
        path = Path(extra)
        try:
            user = parse_catalog(path.read_text("utf-8"))
        except OSError as exc:
            raise InvalidParams(f"cannot read the model catalog {path}: {exc.strerror}") from exc
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise InvalidParams(f"invalid model catalog {path}: {exc}") from exc
        specs.update({s.name: s for s in user})
    return Catalog(list(specs.values()))
