"""Settings from `VFX_*` environment variables and an optional TOML file.

Precedence, highest first: explicit arguments, environment, the TOML file
(`VFX_CONFIG`, default `<user config dir>/config.toml`), built-in defaults.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP_NAME = "vfxmocap"

JobBackend = Literal["celery", "local", "remote"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"
]


def config_file_path() -> Path:
    """Where the optional TOML config lives (`VFX_CONFIG` overrides the default)."""
    override = os.environ.get("VFX_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


class Settings(BaseSettings):
    """Every tunable of vfxmocap. Each field maps to `VFX_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="VFX_", extra="ignore")

    device: str = Field("auto", description="Compute device: auto, cpu, cuda, cuda:N or mps.")
    catalog: Path | None = Field(
        None,
        description="Extra model catalog (TOML) whose entries add to or replace the "
        "built-in ones: custom or fine-tuned models.",
    )
    prompt_templates: Path | None = Field(
        None,
        description="Extra prompt templates (TOML, one table per video family with "
        "`template` and `negative`) that replace the built-in ones for their families.",
    )
    models_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)) / "models",
        description="Where model files are stored and looked up.",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)),
        description="The service's job database (SQLite), uploads and per-job outputs.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the job store (PostgreSQL for several machines); "
        "default: SQLite in WAL mode under data_dir.",
    )
    offline: bool = Field(
        False, description="Never touch the network; model pulls fail at once with instructions."
    )
    download_timeout_s: float = Field(20.0, gt=0, description="Network timeout for model pulls.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "rich", "plain", "json"] = Field(
        "auto", description="Log lines: rich on a terminal, plain otherwise, or json."
    )
    video_crf: int = Field(18, ge=0, le=51, description="H.264 quality (lower is better).")
    video_preset: X264Preset = Field("veryfast", description="x264 speed/size trade-off.")
    queue_size: int = Field(8, ge=1, le=256, description="Frames buffered between pipeline stages.")
    image_max_pixels: int = Field(
        16384 * 8192,
        ge=1,
        description="Largest image or video frame (width x height; 16K x 8K, 134 MP by "
        "default) read from a file or upload; bigger ones are refused from their header, "
        "before any decoding.",
    )

    # --- the service (`vfx serve`, `vfx worker`) ---
    host: str = Field("127.0.0.1", description="API bind address; non-loopback needs api_token.")
    port: int = Field(8420, ge=1, le=65535, description="API port.")
    api_token: str | None = Field(
        None, description="Bearer token every route and WebSocket requires when set."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed by CORS (none by default)."
    )
    rate_limit_per_s: float = Field(
        100.0, gt=0, description="Requests per second each client may sustain."
    )
    rate_burst: int = Field(400, ge=1, description="Requests a client may make in one burst.")
    upload_max_mb: float = Field(2048.0, gt=0, description="Largest upload accepted.")
    body_max_kb: float = Field(
        1024.0, gt=0, description="Largest JSON request body (job settings; files are uploads)."
    )
    stream_max_pixels: int = Field(
        3840 * 2160,
        ge=1,
        description="Largest live-stream frame (width x height, 4K by default), refused "
        "from its header before decoding.",
    )
    stream_max_per_client: int = Field(
        4, ge=1, description="Live streams one client address may have open at once."
    )
    stream_max_total: int = Field(16, ge=1, description="Live streams open at once, in all.")
    model_cache_gb: float = Field(
        4.0, ge=0, description="Memory for models kept loaded between jobs (LRU)."
    )
    workers: int = Field(
        1, ge=0, le=64, description="Local worker processes (device slots); 0: none."
    )
    job_retention_days: float = Field(
        7.0, gt=0, description="Finished jobs and their outputs are deleted after this long."
    )
    cancel_grace_s: float = Field(
        5.0, ge=0, description="How long a cancelled job may take to stop before it is killed."
    )
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long running jobs may take to finish."
    )
    broker_url: str | None = Field(
        None, description="Celery broker (redis://...): jobs go to Celery workers."
    )
    backends: list[JobBackend] = Field(
        default_factory=lambda: list[JobBackend](["celery", "local", "remote"]),
        description="Where jobs go, in order: the first backend with a worker that can "
        "run the job takes it (celery only with a broker, remote only with remote_url).",
    )
    remote_url: str | None = Field(
        None, description="Another vfxmocap server to send jobs to when nothing here can."
    )
    remote_token: str | None = Field(None, description="That server's API token.")
    workflow_modules: list[str] = Field(
        default_factory=list,
        description="Extra modules that register workflows (plugins), imported at start.",
    )

    def updated(self, **values: Any) -> Settings:
        """A copy with these values, checked like every other source (model_copy checks none)."""
        return Settings.model_validate({**self.model_dump(), **values})

    @property
    def job_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.sqlite3'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return init_settings, env_settings, toml

    @property
    def is_offline(self) -> bool:
        """Offline when asked, or when Hugging Face's own offline switch is set."""
        hub = os.environ.get("HF_HUB_OFFLINE", "").upper()
        return self.offline or hub in {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads it


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reload_settings() -> Settings:
    """Re-read environment and TOML (tests and long-running servers after a change)."""
    get_settings.cache_clear()
    return get_settings()
