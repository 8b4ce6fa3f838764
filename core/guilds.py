"""Which servers the bot serves: ``ALLOWED_GUILDS`` (server ids); empty = every server it is in.

A new Discord application is public: anyone with its invite link can add the bot to their server
and queue work on the owner's GPU. With an allowlist, the bot answers nothing in any other server:

- slash commands: the command tree's ``interaction_check`` (``core.tree.ImagineTree``) refuses them
  with one ephemeral line, :data:`NOT_ENABLED` (kinder than the "did not respond" Discord shows for
  silence, and it tells a server's admin why; autocomplete gets nothing);
- buttons, select menus, modals, reactions and messages (image channels, mentions): dropped before
  discord.py parses them (:func:`install_gateway_filter`), so no listener and no component sees them;
- each unlisted server is logged once per process (:meth:`GuildGate.refuse`);
- with ``LEAVE_UNLISTED_GUILDS=true`` the bot leaves them, when added and at start (``bot.py``).

Direct messages carry no server and are always let through (commands are server-only anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

NOT_ENABLED = "This bot is not enabled in this server."
PUBLIC_WARNING = (
    "THIS BOT IS PUBLIC AND SERVES EVERY SERVER: anyone with its invite link can add it and use your GPU. "
    "Set ALLOWED_GUILDS=<your server ids> in .env, and turn Public Bot off at https://discord.com/developers/"
    "applications -> your app -> Installation -> Install Link: None, then Bot -> Public Bot: off."
)

# Gateway events a member causes in a server; their payloads carry "guild_id".
MEMBER_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE")
COMPONENT_TYPES = (3, 5)  # INTERACTION_CREATE: a message component, a modal submit (commands: the tree's check)


class GuildGate:
    """The allowlist, and the one log line per refused server."""

    def __init__(self, allowed: Iterable[int] = ()) -> None:
        self.allowed = frozenset(allowed)
        self._logged: set[int] = set()

    @property
    def open(self) -> bool:
        """No allowlist: every server is served."""
        return not self.allowed

    def allows(self, guild_id: int | None) -> bool:
        return self.open or guild_id is None or guild_id in self.allowed

    def refuse(self, guild_id: int, name: str | None = None) -> None:
        """Log (once per server) that ``guild_id`` is outside ALLOWED_GUILDS and is ignored."""
        if guild_id in self._logged:
            return
        self._logged.add(guild_id)
        label = f"{guild_id} ({name})" if name else str(guild_id)
        log.warning("server %s is not in ALLOWED_GUILDS: ignoring everything there", label)


def _guild_id(data: Any) -> int | None:
    raw = data.get("guild_id") if isinstance(data, dict) else None
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def install_gateway_filter(parsers: dict[str, Callable[[Any], None]], gate: GuildGate) -> None:
    """Drop member events and component interactions from servers ``gate`` refuses, before they are parsed.

    ``parsers`` is discord.py's table of gateway event handlers (``ConnectionState.parsers``, the very
    dict the gateway reads): discord.py offers no global check for listeners or components, and one
    filter here covers every cog's listener and every button without each having to remember it.
    """
    if gate.open:
        return

    def guarded(event: str, inner: Callable[[Any], None]) -> Callable[[Any], None]:
        def parse(data: Any) -> None:
            guild_id = _guild_id(data)
            component = event != "INTERACTION_CREATE" or data.get("type") in COMPONENT_TYPES
            if component and guild_id is not None and not gate.allows(guild_id):
                gate.refuse(guild_id)
                return
            inner(data)

        return parse

    for event in (*MEMBER_EVENTS, "INTERACTION_CREATE"):
        if event in parsers:
            parsers[event] = guarded(event, parsers[event])
