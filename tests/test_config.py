"""Settings: built-in defaults < TOML file (VFX_CONFIG) < VFX_* environment.

Each test sets its own environment with monkeypatch and calls `reload_settings()`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import run_vfx
from vfxmocap.core.config import Settings, config_file_path, get_settings, reload_settings

_OUR_VARS = ("VFX_", "HF_HUB_OFFLINE")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VFX_* or HF_HUB_OFFLINE from the outside; VFX_CONFIG points at a missing file."""
    for key in list(os.environ):
        if key.startswith(_OUR_VARS):
            monkeypatch.delenv(key)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("VFX_CONFIG", str(config))
    monkeypatch.setenv("VFX_MODELS_DIR", str(tmp_path / "models"))
    reload_settings()
    return config


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OUR_VARS)}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_vfx(*args, base=env, timeout=60)


# --- defaults and environment ---------------------------------------------------------------


def test_defaults_without_environment_or_file(clean_env: Path, monkeypatch) -> None:
    monkeypatch.delenv("VFX_MODELS_DIR")
    settings = reload_settings()

    assert settings.device == "auto"
    assert settings.video_crf == 18
    assert settings.video_preset == "veryfast"
    assert settings.offline is False and settings.is_offline is False
    assert settings.download_timeout_s == 20.0
    assert settings.models_dir.name == "models"  # under the user cache dir


def test_environment_variables_use_the_vfx_prefix(clean_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("VFX_VIDEO_CRF", "23")
    monkeypatch.setenv("VFX_DEVICE", "cuda:1")
    monkeypatch.setenv("VFX_MODELS_DIR", "/srv/models")
    monkeypatch.setenv("VIDEO_CRF", "40")  # no prefix: ignored

    settings = reload_settings()

    assert settings.video_crf == 23
    assert settings.device == "cuda:1"
    assert settings.models_dir == Path("/srv/models")


def test_get_settings_is_cached_until_reload(clean_env: Path, monkeypatch) -> None:
    before = get_settings()
    monkeypatch.setenv("VFX_VIDEO_CRF", "30")

    assert get_settings() is before and get_settings().video_crf == 18
    assert reload_settings().video_crf == 30
    assert get_settings().video_crf == 30


# --- the TOML file --------------------------------------------------------------------------


def test_toml_file_named_by_vfx_config_is_read(
    clean_env: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("VFX_MODELS_DIR")
    models = tmp_path / "toml-models"
    clean_env.write_text(
        f'video_preset = "fast"\nmodels_dir = "{models.as_posix()}"\nqueue_size = 3\n'
    )

    settings = reload_settings()

    assert config_file_path() == clean_env
    assert settings.video_preset == "fast"
    assert settings.queue_size == 3
    assert settings.models_dir == models


def test_environment_beats_toml(clean_env: Path, monkeypatch) -> None:
    clean_env.write_text('video_crf = 30\nvideo_preset = "slow"\n')
    monkeypatch.setenv("VFX_VIDEO_CRF", "20")

    settings = reload_settings()

    assert settings.video_crf == 20  # environment wins
    assert settings.video_preset == "slow"  # TOML still fills the rest


def test_explicit_arguments_beat_environment(clean_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("VFX_VIDEO_CRF", "20")
    assert Settings(video_crf=5).video_crf == 5


def test_vfx_config_expands_the_home_directory(monkeypatch) -> None:
    monkeypatch.setenv("VFX_CONFIG", "~/vfx/config.toml")
    assert config_file_path() == Path.home() / "vfx" / "config.toml"


def test_missing_toml_file_is_not_an_error(clean_env: Path) -> None:
    assert not clean_env.exists()
    assert reload_settings().video_preset == "veryfast"


# --- invalid values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("VFX_VIDEO_CRF", "abc"),
        ("VFX_VIDEO_CRF", "52"),
        ("VFX_VIDEO_PRESET", "turbo"),
        ("VFX_DOWNLOAD_TIMEOUT_S", "0"),
        ("VFX_QUEUE_SIZE", "0"),
        ("VFX_LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_environment_value_raises_validation_error(
    clean_env: Path, monkeypatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        reload_settings()
    field = var.removeprefix("VFX_").lower()
    assert any(field in map(str, err["loc"]) for err in info.value.errors())


def test_invalid_toml_value_raises_validation_error(clean_env: Path) -> None:
    clean_env.write_text('video_preset = "turbo"\n')
    with pytest.raises(ValidationError, match="video_preset"):
        reload_settings()


# --- offline --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "TRUE"])
def test_hf_hub_offline_makes_vfx_offline(clean_env: Path, monkeypatch, value: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    settings = reload_settings()
    assert settings.offline is False
    assert settings.is_offline is True


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_hf_hub_offline_false_values_keep_vfx_online(
    clean_env: Path, monkeypatch, value: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert reload_settings().is_offline is False


@pytest.mark.parametrize("value", ["True", "yes", "ON"])
def test_hf_hub_offline_accepts_every_value_huggingface_hub_accepts(
    clean_env: Path, monkeypatch, value: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert reload_settings().is_offline is True


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_vfx_offline(clean_env: Path, monkeypatch, value: str) -> None:
    monkeypatch.setenv("VFX_OFFLINE", value)
    settings = reload_settings()
    assert settings.offline is True and settings.is_offline is True


# --- the CLI --------------------------------------------------------------------------------


def test_cli_config_show_json_reports_effective_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('video_preset = "fast"\nvideo_crf = 30\n')
    models = tmp_path / "models"

    result = run_cli(
        "config",
        "show",
        "--json",
        env=cli_env(
            VFX_CONFIG=str(config), VFX_MODELS_DIR=str(models), VFX_VIDEO_CRF="23", VFX_DEVICE="cpu"
        ),
    )

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config_file"] == str(config)
    assert data["config_file_exists"] is True
    assert data["video_crf"] == 23  # env beats the file
    assert data["video_preset"] == "fast"  # from the file
    assert data["models_dir"] == str(models)
    assert data["device"] == "cpu"
    assert data["offline"] is False


def test_cli_config_show_reports_a_missing_config_file(tmp_path: Path) -> None:
    config = tmp_path / "nope" / "config.toml"
    result = run_cli("config", "show", "--json", env=cli_env(VFX_CONFIG=str(config)))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config_file"] == str(config)
    assert data["config_file_exists"] is False


def test_cli_invalid_environment_value_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "doctor",
        env=cli_env(
            VFX_CONFIG=str(tmp_path / "config.toml"),
            VFX_MODELS_DIR=str(tmp_path / "models"),
            VFX_VIDEO_CRF="abc",
        ),
    )

    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "video_crf" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_invalid_toml_value_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("queue_size = 0\n")
    result = run_cli("config", "show", env=cli_env(VFX_CONFIG=str(config)))
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_config_file_with_toml_syntax_error_is_invalid_configuration(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("video_crf = \n")
    result = run_cli("config", "show", env=cli_env(VFX_CONFIG=str(config)))
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
