"""The slash options of the engine's model add-ons (LoRA, image reference): autocomplete and hiding.

Discord's options are fixed per command when the tree syncs, so an option whose add-on the engine
does not offer is taken off the command before that (:func:`hide_unoffered`, called as the cog is
made in ``setup_hook``, after ``engine.start()``): members never see an option that cannot work.
The job service still checks every pick against the offer of the moment (``core.jobs.addons``),
for an engine whose offer changes while the bot runs (a cluster) and for raw interactions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands

from cogs.ui.client import bot_of
from core.jobs.addons import DEFAULT_LORA_WEIGHT, DEFAULT_REFERENCE_WEIGHT
from engine.api import LORA_WEIGHT_RANGE, REFERENCE_WEIGHT_RANGE, EngineOffer

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord shows at most this many autocomplete choices
LORA_OPTIONS = ("lora", "lora_weight", "lora2", "lora2_weight")
REFERENCE_OPTIONS = ("reference", "reference_weight", "reference_mode")
REFERENCE_MODE_CHOICES = [
    app_commands.Choice(name="full: look and subject", value="full"),
    app_commands.Choice(name="style: the look only", value="style"),
]
_LORA_WEIGHTS = "{:g} to {:g} (default {:g})".format(*LORA_WEIGHT_RANGE, DEFAULT_LORA_WEIGHT)
_REFERENCE_WEIGHTS = "{:g} to {:g} (default {:g})".format(*REFERENCE_WEIGHT_RANGE, DEFAULT_REFERENCE_WEIGHT)
ADDON_DESCRIPTIONS = {
    "lora": "A LoRA to stack on the model (start typing to pick one)",
    "lora_weight": f"How strongly the LoRA acts, {_LORA_WEIGHTS}",
    "lora2": "A second LoRA to stack",
    "lora2_weight": f"How strongly the second LoRA acts, {_LORA_WEIGHTS}",
    "reference": "An image whose look (or subject) the result borrows (PNG, JPEG or WebP)",
    "reference_weight": f"How strongly the reference acts, {_REFERENCE_WEIGHTS}",
    "reference_mode": "full (look and subject, default) or style (the look only)",
}


def matching_loras(names: Iterable[str], typed: str, limit: int = MAX_CHOICES) -> list[str]:
    """The names that contain ``typed`` (any case), those that start with it first; at most ``limit``."""
    needle = typed.strip().lower()
    found = [name for name in names if needle in name.lower()]
    found.sort(key=lambda name: not name.lower().startswith(needle))  # stable: the offer's order otherwise
    return found[:limit]


async def lora_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The engine's LoRA names matching what the member has typed so far."""
    offer = bot_of(interaction).jobs.engine.offer
    return [app_commands.Choice(name=name[:100], value=name) for name in matching_loras(offer.loras, current)]


def unoffered(offer: EngineOffer) -> tuple[str, ...]:
    """The add-on options that ``offer`` has nothing behind."""
    hidden: tuple[str, ...] = ()
    if not offer.loras:
        hidden += LORA_OPTIONS
    if not offer.reference:
        hidden += REFERENCE_OPTIONS
    return hidden


def hide_unoffered(command: app_commands.Command[Any, ..., Any], offer: EngineOffer) -> tuple[str, ...]:
    """Take the options of add-ons ``offer`` lacks off ``command`` (a cog's own copy); returns their names.

    The command's callback takes them with their defaults (``None``). discord.py has no public way to
    drop a parameter, so this edits the copy's ``_params``, which ``Cog`` makes for each cog instance.
    """
    hidden = tuple(name for name in unoffered(offer) if command._params.pop(name, None) is not None)
    if hidden:
        log.info("/%s: options %s hidden (the engine does not offer them)", command.name, ", ".join(hidden))
    return hidden
