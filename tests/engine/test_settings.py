"""Engine settings from the environment, the tiny preset, and the one-line errors every settings class shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, field_validator

from engine.settings import HUB_MODELS, EngineSettings
from engine.settings_base import EnvSettings, SettingsError


def test_defaults_and_every_kind_of_value():
    assert EngineSettings.from_env({}) == EngineSettings()
    settings = EngineSettings.from_env(
        {
            "ENGINE_DEVICE": "cuda:1",
            "ENGINE_MEMORY": "Offload",
            "ENGINE_CACHE_DIR": "~/models",
            "FINAL_MODEL": "sdxl",
            "FINAL_STEPS": " 40 ",
            "REFINER_SPLIT": "0.75",
            "ENGINE_FAST_KERNELS": "off",
            "ENGINE_COMPILE": "yes",
            "ENGINE_CUDA_GRAPHS": "auto",
            "ENGINE_COMPILE_CACHE_DIR": "/tmp/graphs",
            "VAE_MODEL": "off",
            "ENGINE_QUEUE_MAX": "",  # blank: the default
        }
    )
    assert (settings.device, settings.memory, settings.final_model) == ("cuda:1", "offload", "sdxl")
    assert settings.cache_dir == Path("~/models").expanduser() and settings.compile_cache() == Path("/tmp/graphs")
    assert (settings.final_steps, settings.refiner_split, settings.queue_max) == (40, 0.75, 200)
    assert (settings.fast_kernels, settings.compile, settings.cuda_graphs) == (False, True, None)
    assert settings.vae_model == ""


def test_the_tiny_preset_sets_its_defaults_under_what_is_given():
    tiny = EngineSettings.from_env({"ENGINE_PRESET": "Tiny", "FINAL_STEPS": "6"})
    assert tiny.preset == "tiny" and tiny.turbo_model == "tiny:turbo" and tiny.vae_model == ""
    assert tiny.final_steps == 6  # the environment's, not the preset's 4
    assert EngineSettings.for_preset("tiny").final_steps == 4
    assert EngineSettings.for_preset("sdxl").turbo_model == HUB_MODELS["turbo"]
    # Only what from_env or for_preset is given: a constructor does not read the environment.
    assert EngineSettings(preset="tiny").turbo_model == HUB_MODELS["turbo"]


def test_code_only_fields_are_not_read_from_the_environment():
    settings = EngineSettings.from_env({"final_not_starved_after_s": "1", "FINAL_NOT_STARVED_AFTER_S": "1"})
    assert settings.final_not_starved_after_s == 20.0
    assert EngineSettings.for_preset("tiny", final_not_starved_after_s=3600).final_not_starved_after_s == 3600


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"ENGINE_PRESET": "huge"}, "ENGINE_PRESET='huge': use sdxl or tiny."),
        ({"DRAFT_STEPS": "9"}, "DRAFT_STEPS=9: use 1 to 4."),
        ({"DRAFT_STEPS": "two"}, "DRAFT_STEPS='two' is not a valid whole number: use 1 to 4."),
        ({"ENGINE_GATHER_MS": "soon"}, "ENGINE_GATHER_MS='soon' is not a valid number: use 0 to 1000."),
        ({"REFINER_SPLIT": "1"}, "REFINER_SPLIT=1: use at least 0.5 and below 1."),
        ({"ENGINE_DEVICE": "gpu"}, "ENGINE_DEVICE='gpu': use auto, cpu, cuda or cuda:N."),
        ({"ENGINE_MEMORY": "lots"}, "ENGINE_MEMORY='lots': use auto, resident or offload."),
        ({"ENGINE_COMPILE": "maybe"}, "ENGINE_COMPILE='maybe': use true, false or auto."),
        ({"ENGINE_PRELOAD": "maybe"}, "ENGINE_PRELOAD='maybe': use true or false."),
        (
            {"ENGINE_COMPILE_MODELS": "turbo,unet"},
            "ENGINE_COMPILE_MODELS: unknown model(s) unet; use turbo, ssd-1b, sdxl-base, sdxl-refiner.",
        ),
    ],
)
def test_a_bad_value_is_one_line_with_the_variable_and_the_fix(env, line):
    with pytest.raises(SettingsError) as info:
        EngineSettings.from_env(env)
    assert str(info.value) == line


def test_replace_and_for_preset_check_their_values():
    settings = EngineSettings.for_preset("tiny", device="cpu")
    assert settings.replace(draft_decoder="full").draft_decoder == "full" and settings.draft_decoder == "tiny"
    with pytest.raises(SettingsError, match="^ENGINE_MAX_BATCH=0: use 1 to 64.$"):
        settings.replace(max_batch_images=0)
    with pytest.raises(SettingsError, match="^PREVIEW_EVERY=-1: "):
        EngineSettings.for_preset("sdxl", preview_every=-1)


def test_the_environment_wins_over_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("ENGINE_PRESET=tiny\nFINAL_STEPS=8\nENGINE_DEVICE=cpu\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENGINE_PRESET", raising=False)
    monkeypatch.delenv("FINAL_STEPS", raising=False)
    monkeypatch.setenv("ENGINE_DEVICE", "cuda")
    settings = EngineSettings.from_env()
    assert (settings.preset, settings.final_steps, settings.device) == ("tiny", 8, "cuda")


class Sample(EnvSettings):
    """A settings class of each kind of rule, for the shared error helper."""

    size: int = Field(default=64, ge=64, multiple_of=8, validation_alias="SAMPLE_SIZE", description="a multiple of 8")
    ratio: float = Field(default=0.5, allow_inf_nan=False, validation_alias="SAMPLE_RATIO")
    name: str = Field(default="a", validation_alias="SAMPLE_NAME", description="a name without spaces")

    @field_validator("name")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if " " in value:
            raise ValueError("spaces")  # the line comes from the description
        if value == "reserved":
            raise SettingsError("SAMPLE_NAME=reserved is taken: pick another name.")  # the validator's own line
        return value


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"SAMPLE_SIZE": "65"}, "SAMPLE_SIZE=65: use a multiple of 8."),
        ({"SAMPLE_SIZE": "many"}, "SAMPLE_SIZE='many' is not a valid whole number: use a multiple of 8."),
        ({"SAMPLE_RATIO": "half"}, "SAMPLE_RATIO='half' is not a valid number: use a number."),
        ({"SAMPLE_RATIO": "nan"}, "SAMPLE_RATIO=nan: input should be a finite number."),
        ({"SAMPLE_NAME": "two words"}, "SAMPLE_NAME='two words': use a name without spaces."),
        ({"SAMPLE_NAME": "reserved"}, "SAMPLE_NAME=reserved is taken: pick another name."),
    ],
)
def test_one_helper_words_every_kind_of_failure(env, line):
    with pytest.raises(SettingsError) as info:
        Sample.from_env(env)
    assert str(info.value) == line and "\n" not in line
