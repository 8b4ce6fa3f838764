"""A server's style presets: what it offers, a name resolved for a new prompt, and its admins' changes.

Reads and writes the ``guild_styles`` rows through the store; the rules (defaults, names, what a
removal means) are :mod:`core.styles`. No cache: one small indexed read per lookup, and an
autocomplete answer is always up to date with the last ``/settings style`` change.
"""

from __future__ import annotations

import logging

from core.history import GuildStyle, HistoryStore
from core.limits import Refusal
from core.styles import (
    MAX_GUILD_STYLES,
    Style,
    check_style_name,
    check_style_texts,
    default_style,
    server_styles,
    unknown_style,
)

log = logging.getLogger(__name__)


class StyleBook:
    """The style presets of every server, over the history store."""

    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    async def available(self, guild_id: int) -> tuple[Style, ...]:
        """The styles this server offers, by name."""
        return server_styles(await self._store.guild_styles(guild_id))

    async def resolve(self, guild_id: int, name: object) -> Style:
        """The style ``name`` of this server; a Refusal naming it (and a few known ones) if there is none."""
        checked = check_style_name(name)
        styles = await self.available(guild_id)
        for style in styles:
            if style.name == checked:
                return style
        raise unknown_style(checked, styles)

    async def add(
        self, guild_id: int, name: object, prompt_suffix: object = None, negative_prompt: object = None
    ) -> tuple[Style, Style | None]:
        """Add (or replace) a style of this server; returns it and the style of that name it replaces.

        Without a suffix, a default's name brings the bot's own version back. Raises Refusal, storing nothing.
        """
        checked = check_style_name(name)
        rows = await self._store.guild_styles(guild_id)
        before = next((s for s in server_styles(rows) if s.name == checked), None)
        default = default_style(checked)
        if prompt_suffix is None and negative_prompt is None and default is not None:
            await self._store.delete_guild_style(guild_id, checked)
            return default, before
        suffix, negative = check_style_texts(prompt_suffix, negative_prompt)
        if not any(row.name == checked for row in rows) and len(rows) >= MAX_GUILD_STYLES:
            raise Refusal(f"This server has {len(rows)} styles of its own, the most I keep; remove one first.")
        await self._store.put_guild_style(GuildStyle(guild_id, checked, suffix, negative))
        return Style(checked, suffix, negative), before

    async def remove(self, guild_id: int, name: object) -> Style:
        """Stop offering style ``name`` in this server (a default is hidden); returns what was removed."""
        checked = check_style_name(name)
        styles = await self.available(guild_id)
        removed = next((s for s in styles if s.name == checked), None)
        if removed is None:
            raise unknown_style(checked, styles)
        if default_style(checked) is not None:
            await self._store.put_guild_style(GuildStyle(guild_id, checked, hidden=True))
        else:
            await self._store.delete_guild_style(guild_id, checked)
        return removed
