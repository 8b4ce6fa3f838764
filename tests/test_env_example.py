"""``.env.example`` is the list of every setting: each variable a settings class reads is there, with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.settings import BotSettings
from engine.addons.settings import AddonSettings
from engine.cluster.settings import ClusterSettings
from engine.settings import EngineSettings
from engine.settings_base import EnvSettings

ROOT = Path(__file__).resolve().parent.parent
CLASSES = (BotSettings, EngineSettings, AddonSettings, ClusterSettings)
# Fields set in code only (tests, benchmarks): no variable, so nothing in .env.example.
CODE_ONLY = {"final_guidance_ssd1b", "final_guidance_sdxl", "final_not_starved_after_s"}


def example() -> dict[str, str]:
    """``VAR=value`` lines of .env.example; ``#VAR=value`` (a default shown commented out) counts too."""
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    return dict(match.groups() for line in lines if (match := re.match(r"#?([A-Z][A-Z0-9_]*)=(.*)$", line)))


def variables(settings_cls: type[EnvSettings]) -> dict[str, str]:
    """Field name -> the variable it is read from."""
    return {
        name: field.validation_alias
        for name, field in settings_cls.model_fields.items()
        if isinstance(field.validation_alias, str)
    }


def test_every_variable_is_in_the_example_and_every_example_line_is_read():
    read = {variable for settings_cls in CLASSES for variable in variables(settings_cls).values()}
    listed = set(example())
    assert sorted(read - listed) == [], "read but not in .env.example"
    assert sorted(listed - read) == [], "in .env.example but read by no settings class"


@pytest.mark.parametrize("settings_cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_names_its_variable(settings_cls):
    # A field without one would silently never be read from the environment.
    unnamed = set(settings_cls.model_fields) - set(variables(settings_cls))
    assert unnamed <= CODE_ONLY, unnamed


@pytest.mark.parametrize("settings_cls", CLASSES, ids=lambda c: c.__name__)
def test_the_example_shows_the_defaults(settings_cls):
    required = {"DISCORD_TOKEN": "t"} if settings_cls is BotSettings else {}
    assert settings_cls.from_env({**example(), **required}) == settings_cls.from_env(required)
