"""/history pages: privacy, paging bounds, escaping, custom ids that fit Discord's 100 characters."""

from __future__ import annotations

from unittest.mock import create_autospec

import discord
import pytest

from cogs.history import HistoryPageButton, RepostSelect, history_page
from core.limits import MAX_SEARCH_CHARS, Refusal
from tests.core.records import new_job

GUILD = 10


def interaction(*, user_id: int = 1, moderator: bool = False):
    double = create_autospec(discord.Interaction, instance=True)
    double.guild_id = GUILD
    double.user = discord.Object(user_id)
    double.permissions = discord.Permissions(manage_messages=moderator)
    return double


async def add_jobs(store, user_id: int, prompts: list[str]) -> None:
    for prompt in prompts:
        await store.create_job(new_job(guild_id=GUILD, channel_id=100, user_id=user_id, prompt=prompt))


async def test_own_history_newest_first_with_escaped_prompts(store):
    await add_jobs(store, 1, ["first @everyone", "second *star*"])
    text, view = await history_page(interaction(), store, viewer_id=1, target_id=1, page=1, search=None)
    assert text.index("second") < text.index("first")
    assert "@\u200beveryone" in text and "\\*star\\*" in text
    assert "page 1 of 1, 2 jobs" in text
    assert [item.custom_id for item in view.children] == ["hist:1:1:0:", "hist:1:1:2:", "histpost:1"]
    assert all(item.item.disabled for item in view.children[:2])


async def test_another_members_history_is_for_moderators_only(store, monkeypatch):
    await add_jobs(store, 2, ["secret"])
    with pytest.raises(Refusal, match="Only moderators"):
        await history_page(interaction(), store, viewer_id=1, target_id=2, page=1, search=None)
    # A server moderator who can read channel 100 (the channel scope itself: tests/cogs/test_scope.py).
    monkeypatch.setattr("cogs.history.server_moderator", lambda user: True)
    monkeypatch.setattr("cogs.history.readable_channel_ids", lambda member: [100])
    text, _ = await history_page(interaction(moderator=True), store, viewer_id=1, target_id=2, page=1, search=None)
    assert "secret" in text
    monkeypatch.setattr("cogs.history.readable_channel_ids", lambda member: [101])
    text, _ = await history_page(interaction(moderator=True), store, viewer_id=1, target_id=2, page=1, search=None)
    assert "secret" not in text


async def test_search_with_sql_characters_matches_literally(store):
    await add_jobs(store, 1, ["100% cotton", "it's a 'quote'", "plain"])
    text, _ = await history_page(interaction(), store, viewer_id=1, target_id=1, page=1, search="100%")
    assert "cotton" in text and "plain" not in text
    text, _ = await history_page(interaction(), store, viewer_id=1, target_id=1, page=1, search="'quote'")
    assert "quote" in text and "plain" not in text
    text, view = await history_page(interaction(), store, viewer_id=1, target_id=1, page=1, search="nothing")
    assert "Nothing matches" in text and view.children == []


async def test_pages_out_of_range(store):
    await add_jobs(store, 1, [f"p{i}" for i in range(12)])
    text, view = await history_page(interaction(), store, viewer_id=1, target_id=1, page=2, search=None)
    assert "page 2 of 2" in text and "p0" in text and "p11" not in text
    with pytest.raises(Refusal, match="there are 2"):
        await history_page(interaction(), store, viewer_id=1, target_id=1, page=3, search=None)
    with pytest.raises(Refusal, match="pages start at 1"):
        await history_page(interaction(), store, viewer_id=1, target_id=1, page=0, search=None)


def test_custom_ids_fit_with_the_longest_search_and_ids():
    big = 2**63 - 1
    button = HistoryPageButton(big, big, 10_000, "ü" * MAX_SEARCH_CHARS, label="Older ▶", disabled=False)
    assert len(button.custom_id) <= 100
    match = HistoryPageButton.__discord_ui_compiled_template__.fullmatch(button.custom_id)
    assert match["search"] == "ü" * MAX_SEARCH_CHARS
    assert RepostSelect.__discord_ui_compiled_template__.fullmatch(f"histpost:{big}")
