"""What every settings class shares (the bot's, the engine's, the add-ons', the cluster's).

A settings class is a frozen pydantic-settings ``BaseSettings`` whose fields each name their variable
(``validation_alias``) and say in their ``description`` what to use instead of a bad value; sizes and
intervals are field constraints (``ge``, ``le``, ``multiple_of``), other rules validators.

- ``from_env()`` reads the environment and ``./.env`` (the environment wins, as ``load_dotenv(override=False)``);
  ``from_env(mapping)`` reads only that mapping (tests). A blank value means "the default" unless the class
  sets ``env_ignore_empty=False`` (the add-ons, where a blank model means "off").
- Constructing one directly takes only what is passed, on top of the defaults (presets, tests), and
  ``replace(**changes)`` is a checked copy.
- Whatever is wrong becomes one ``SettingsError``: one line that names the variable, the value it was given
  and what to use (:func:`settings_error`). A validator whose rule needs its own words (or spans fields)
  raises ``SettingsError`` with the whole line itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from typing_extensions import Self

# What a failure of a kind says after the value, and the fix where the field gives none.
_NOT_PARSED = {
    "int_parsing": " is not a valid whole number",
    "int_from_float": " is not a whole number",
    "float_parsing": " is not a valid number",
}
_FIXES = {
    "int_parsing": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
}


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used; the message is one line naming the variable."""


class Variables(PydanticBaseSettingsSource):
    """Each field's variable from a mapping, surrounding blanks removed, keyed by field name.

    A field without a variable of its own is not read (it is set in code only); a blank value is left
    out where the class ignores empty values.
    """

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.variables = variables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raw = self.variables.get(field.validation_alias) if isinstance(field.validation_alias, str) else None
        if raw is None or (not raw.strip() and self.config.get("env_ignore_empty", False)):
            return None, field_name, False
        return raw.strip(), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


class EnvSettings(BaseSettings):
    """The base of every settings class: see the module's docstring."""

    model_config = SettingsConfigDict(
        frozen=True,
        populate_by_name=True,  # constructed in code by field name, read from the environment by variable
        case_sensitive=True,
        env_file=".env",
        env_ignore_empty=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what is passed: the environment is read by :meth:`from_env`, never behind a constructor's back."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Build from ``env`` (default: the environment over ``./.env``). Raises SettingsError with one clear line."""
        return cls.build(cls.read(env))

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The raw values ``env`` (default: the environment over ``./.env``) gives, by field name."""
        if env is None:
            dotenv = DotEnvSettingsSource(cls).env_vars  # env_file of model_config, relative to the working folder
            env = {**{name: value for name, value in dotenv.items() if value is not None}, **os.environ}
        return Variables(cls, env)()

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> Self:
        """Check ``values`` (by field name) on top of the defaults; a bad one raises SettingsError."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise settings_error(cls, exc, values) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, checked like a new one (pydantic's ``model_copy`` checks nothing)."""
        return self.build({**self.model_dump(), **changes})


def settings_error(settings_cls: type[BaseSettings], exc: ValidationError, values: Mapping[str, Any]) -> SettingsError:
    """The first problem in ``exc`` as one line: the variable, the value it was given and what to use instead."""
    problem = exc.errors()[0]
    cause = problem.get("ctx", {}).get("error")
    if isinstance(cause, SettingsError):
        return cause  # the validator wrote the whole line
    name, field = _field(settings_cls, str(problem["loc"][0]) if problem["loc"] else "")
    variable = field.validation_alias if field is not None and isinstance(field.validation_alias, str) else name
    if field is not None and field.description:
        fix = f"use {field.description}"
    else:
        fix = _FIXES.get(problem["type"]) or problem["msg"][:1].lower() + problem["msg"][1:]
    if problem["type"] == "missing":
        return SettingsError(f"{variable} is not set: {fix}.")
    given = _shown(values.get(name, problem["input"]))
    return SettingsError(f"{variable}={given}{_NOT_PARSED.get(problem['type'], '')}: {fix}.")


def _field(settings_cls: type[BaseSettings], key: str) -> tuple[str, FieldInfo | None]:
    """The field an error's location names, by field name or by its variable."""
    for name, field in settings_cls.model_fields.items():
        if key in (name, field.validation_alias):
            return name, field
    return key, None


def _shown(value: object) -> str:
    """A number as written (``UPSCALE_TILE=100``), anything else quoted (``LOG_LEVEL='loud'``)."""
    text = value if isinstance(value, str) else str(value)
    try:
        float(text)
    except ValueError:
        return repr(text)
    return text
