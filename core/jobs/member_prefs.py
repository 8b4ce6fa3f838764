"""A member's /prefer defaults as stored: read them, or check and store changes (``bot.jobs.prefs``).

The rules (what each default may be, how a request takes them) are :mod:`core.jobs.preferences`.
"""

from __future__ import annotations

from typing import Any

from core.history import HistoryStore, UserPrefs
from core.jobs.preferences import checked_pref_changes
from engine.api import ImageEngine


class MemberPrefs:
    """Every member's defaults, over the history store; the final model is checked against the engine's offer."""

    def __init__(self, store: HistoryStore, engine: ImageEngine) -> None:
        self._store = store
        self._engine = engine

    async def get(self, user_id: int) -> UserPrefs:
        return await self._store.user_prefs(user_id)

    async def update(self, user_id: int, **changes: Any) -> UserPrefs:
        """Check and store some of a member's defaults; ``None`` resets one. Raises Refusal, storing nothing.

        Fields: ``aspect``, ``negative_prompt``, ``style_suffix``, ``final_model``, ``dm_results``.
        """
        checked = checked_pref_changes(changes, self._engine.offer.default_final_model)
        return await self._store.update_user_prefs(user_id, **checked)
