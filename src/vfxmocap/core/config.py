"""Settings from `VFX_*` environment variables and an optional TOML file.

Precedence, highest first: explicit arguments, environment, the TOML file
(`VFX_CONFIG`, default `<user config dir>/config.toml`), built-in defaults.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP_NAME = "vfxmocap"

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
    models_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)) / "models",
        description="Where model files are stored and looked up.",
    )
    output_dir: Path = Field(Path("out"), description="Default directory for results.")
    offline: bool = Field(
        False, description="Never touch the network; model pulls fail at once with instructions."
    )
    download_timeout_s: float = Field(20.0, gt=0, description="Network timeout for model pulls.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    video_crf: int = Field(18, ge=0, le=51, description="H.264 quality (lower is better).")
    video_preset: X264Preset = Field("veryfast", description="x264 speed/size trade-off.")
    queue_size: int = Field(8, ge=1, le=256, description="Frames buffered between pipeline stages.")

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
