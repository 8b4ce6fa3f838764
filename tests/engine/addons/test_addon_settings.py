"""Add-on settings from the environment, the start-up check, and the download command's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.addons import addon_problems, available
from engine.addons.__main__ import main
from engine.addons.settings import DESCRIBE_HUB, REFERENCE_HUB, AddonSettings
from engine.settings_base import SettingsError


def test_from_env_reads_every_variable(tmp_path):
    settings = AddonSettings.from_env({
        "ENGINE_CACHE_DIR": str(tmp_path),
        "LORA_DIR": "~/loras",
        "LORA_HUB": "owner/a, owner/b/style.safetensors",
        "REFERENCE_MODEL": "off",
        "UPSCALER_MODEL": "/models/RealESRGAN_x2plus.safetensors",
        "UPSCALE_TILE": "768",
        "UPSCALE_OVERLAP": "96",
        "UPSCALE_CREATIVE_STRENGTH": "0.25",
        "UPSCALE_CREATIVE_STEPS": "24",
        "UPSCALER_TILE": "256",
        "DESCRIBE_MODEL": "",
    })
    assert settings.cache_dir == tmp_path
    assert settings.lora_dir == "~/loras"
    assert settings.lora_hub == ("owner/a", "owner/b/style.safetensors")
    assert settings.reference_model == "" and settings.describe_model == ""
    assert settings.upscaler_model == "/models/RealESRGAN_x2plus.safetensors"
    assert (settings.upscale_tile, settings.upscale_overlap, settings.upscaler_tile) == (768, 96, 256)
    assert (settings.upscale_strength, settings.upscale_steps) == (0.25, 24)


def test_defaults_and_tiny_preset(tmp_path):
    plain = AddonSettings.from_env({})
    assert plain.reference_model == REFERENCE_HUB and plain.describe_model == DESCRIBE_HUB
    assert plain.lora_dir == "" and plain.upscaler_model == ""
    tiny = AddonSettings.from_env({"ENGINE_PRESET": "tiny", "ENGINE_CACHE_DIR": str(tmp_path)})
    assert tiny.lora_dir == "tiny:loras" and tiny.describe_model == "tiny:describe"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UPSCALE_TILE": "100"}, "UPSCALE_TILE=100"),
        ({"UPSCALE_TILE": "big"}, "UPSCALE_TILE='big'"),
        ({"UPSCALE_OVERLAP": "600"}, "UPSCALE_OVERLAP=600"),
        ({"UPSCALE_CREATIVE_STRENGTH": "0"}, "UPSCALE_CREATIVE_STRENGTH"),
        ({"LORA_HUB": "just-a-name"}, "LORA_HUB entry 'just-a-name'"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        AddonSettings.from_env(env)


def test_start_up_check_lists_what_cannot_be_used(addon_settings, tmp_path):
    assert addon_problems(addon_settings) == {}
    assert available(addon_settings) == ["lora", "reference", "upscale", "describe"]
    broken = addon_settings.replace(lora_dir=str(tmp_path / "none"), describe_model=str(tmp_path))
    problems = addon_problems(broken)
    assert set(problems) == {"lora", "describe"}
    assert available(broken) == ["reference", "upscale"]
    off = addon_settings.replace(lora_dir="", reference_model="", describe_model="", upscaler_model="")
    assert addon_problems(off) == {} and available(off) == ["upscale"]  # Lanczos is always there


def test_cli_errors_are_one_line(monkeypatch, capsys):
    monkeypatch.setenv("UPSCALE_TILE", "7")
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: UPSCALE_TILE=7") and err.count("\n") == 1


def test_cli_check_on_the_tiny_preset(monkeypatch, capsys, tiny_cache_dir):
    monkeypatch.setenv("ENGINE_PRESET", "tiny")
    monkeypatch.setenv("ENGINE_CACHE_DIR", str(Path(tiny_cache_dir)))
    assert main(["check"]) == 0
    assert capsys.readouterr().out.strip() == "available: lora, reference, upscale, describe"


def test_blank_sources_turn_add_ons_off_and_tiny_keeps_what_is_given(tmp_path):
    off = AddonSettings.from_env({"LORA_DIR": " ", "UPSCALER_MODEL": "none", "ENGINE_CACHE_DIR": ""})
    assert (off.lora_dir, off.upscaler_model) == ("", "")
    assert off.cache_dir == AddonSettings().cache_dir  # a blank cache folder is the default one
    tiny = AddonSettings.from_env({"ENGINE_PRESET": "tiny", "ENGINE_CACHE_DIR": str(tmp_path), "DESCRIBE_MODEL": "off"})
    assert tiny.describe_model == "" and tiny.reference_model == "tiny:ip-adapter" and tiny.upscale_tile == 128
    assert AddonSettings.for_tiny(tmp_path) == AddonSettings.from_env(
        {"ENGINE_PRESET": "tiny", "ENGINE_CACHE_DIR": str(tmp_path)}
    )
