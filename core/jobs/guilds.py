"""Each server's settings, read once from the store and kept until they change."""

from __future__ import annotations

from typing import Any

from core.history import GuildSettings, HistoryStore


class GuildCache:
    """The settings of the servers this process has seen; every change goes through here (and the store)."""

    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self._guilds: dict[int, GuildSettings] = {}

    async def get(self, guild_id: int) -> GuildSettings:
        cached = self._guilds.get(guild_id)
        if cached is None:
            cached = self._guilds[guild_id] = await self._store.guild_settings(guild_id)
        return cached

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        self._guilds.pop(guild_id, None)
        settings = self._guilds[guild_id] = await self._store.update_guild_settings(guild_id, **changes)
        return settings

    async def add_image_channel(self, guild_id: int, channel_id: int) -> GuildSettings:
        self._guilds.pop(guild_id, None)
        await self._store.add_image_channel(guild_id, channel_id)
        return await self.get(guild_id)

    async def remove_image_channel(self, guild_id: int, channel_id: int) -> bool:
        self._guilds.pop(guild_id, None)
        return await self._store.remove_image_channel(guild_id, channel_id)

    def forget(self) -> None:
        """Read every server's settings from the store again (after the store was changed directly)."""
        self._guilds.clear()
