"""Slash command options shared by the cogs.

Discord enforces the bounds given here in its client, but a raw interaction can carry anything,
so the transformers pass values through unchanged and ``core.limits`` checks them again with
a message that says what is wrong.
"""

from __future__ import annotations

import discord
from discord import app_commands

from cogs.ui.client import bot_of
from core.limits import MAX_SEARCH_CHARS, MAX_STYLE_SUFFIX_CHARS
from core.prompt_text import MAX_STYLE_NAME_CHARS
from core.styles import choice_label, matching
from engine.api import (
    ASPECTS,
    FINAL_MODELS,
    LORA_WEIGHT_RANGE,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    REFERENCE_WEIGHT_RANGE,
)

ASPECT_CHOICES = [app_commands.Choice(name=ratio, value=ratio) for ratio in ASPECTS]
MODEL_CHOICES = [app_commands.Choice(name=model, value=model) for model in FINAL_MODELS]


class _PassThrough(app_commands.Transformer):
    """An option with Discord-side bounds whose value reaches the command unchanged."""

    option_type = discord.AppCommandOptionType.string
    low: float | None = None
    high: float | None = None

    @property
    def type(self) -> discord.AppCommandOptionType:
        return self.option_type

    @property
    def min_value(self) -> float | None:
        return self.low

    @property
    def max_value(self) -> float | None:
        return self.high

    async def transform(self, interaction: discord.Interaction, value: object, /) -> object:
        return value


class PromptOption(_PassThrough):
    high = MAX_PROMPT_CHARS


class SearchOption(_PassThrough):
    high = MAX_SEARCH_CHARS


class StyleSuffixOption(_PassThrough):
    high = MAX_STYLE_SUFFIX_CHARS


class StyleNameOption(_PassThrough):
    high = MAX_STYLE_NAME_CHARS


class StylePickOption(StyleNameOption):
    """A style of this server, offered as the member types (names that start with it first, 25 at most)."""

    async def autocomplete(
        self, interaction: discord.Interaction, value: int | float | str, /
    ) -> list[app_commands.Choice[int | float | str]]:
        if interaction.guild_id is None:
            return []
        styles = await bot_of(interaction).jobs.styles.available(interaction.guild_id)
        choices: list[app_commands.Choice[int | float | str]] = [
            app_commands.Choice(name=choice_label(s), value=s.name) for s in matching(styles, str(value))
        ]
        return choices


class SeedOption(_PassThrough):
    option_type = discord.AppCommandOptionType.integer
    low = 0
    high = MAX_SEED


class PageOption(_PassThrough):
    option_type = discord.AppCommandOptionType.integer
    low = 1


class JobIdOption(_PassThrough):
    option_type = discord.AppCommandOptionType.integer
    low = 1


class StrengthOption(_PassThrough):
    option_type = discord.AppCommandOptionType.number
    low = 0
    high = 1


class PercentOption(_PassThrough):
    option_type = discord.AppCommandOptionType.number
    low = 0
    high = 100


Prompt = app_commands.Transform[str, PromptOption]
Search = app_commands.Transform[str, SearchOption]
StyleSuffix = app_commands.Transform[str, StyleSuffixOption]
StyleName = app_commands.Transform[str, StyleNameOption]
StylePick = app_commands.Transform[str, StylePickOption]
Seed = app_commands.Transform[int, SeedOption]
Page = app_commands.Transform[int, PageOption]
JobId = app_commands.Transform[int, JobIdOption]
Strength = app_commands.Transform[float, StrengthOption]
Percent = app_commands.Transform[float, PercentOption]


class LoraWeightOption(_PassThrough):
    option_type = discord.AppCommandOptionType.number
    low, high = LORA_WEIGHT_RANGE


class ReferenceWeightOption(_PassThrough):
    option_type = discord.AppCommandOptionType.number
    low, high = REFERENCE_WEIGHT_RANGE


LoraWeight = app_commands.Transform[float, LoraWeightOption]
ReferenceWeight = app_commands.Transform[float, ReferenceWeightOption]
