"""Guild settings and user preferences (core/history/choices.py): defaults, checked changes, kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.history import GuildSettings, HistoryStore, UserPrefs


async def test_guild_settings_defaults(store: HistoryStore) -> None:
    settings = await store.guild_settings(5)
    assert settings == GuildSettings(guild_id=5, image_channels=frozenset())
    assert (settings.max_waiting_per_user, settings.max_jobs_per_minute) == (10, 12)
    assert settings.finals_outside_nsfw is True and settings.image_safety == "off"
    assert settings.blocked_words == ()


async def test_update_guild_settings(store: HistoryStore, db_path: Path) -> None:
    updated = await store.update_guild_settings(5, max_waiting_per_user=1, blocked_words=["gore", " gore ", "", "x"])
    assert updated.max_waiting_per_user == 1
    assert updated.blocked_words == ("gore", "x")
    assert updated.max_jobs_per_minute == 12  # untouched fields keep their defaults
    again = await store.update_guild_settings(5, finals_outside_nsfw=False, image_safety="block")
    assert again.max_waiting_per_user == 1 and again.blocked_words == ("gore", "x")
    assert again.finals_outside_nsfw is False and again.image_safety == "block"
    assert await store.guild_settings(5) == again
    assert await store.guild_settings(6) == GuildSettings(guild_id=6, image_channels=frozenset())
    assert await store.update_guild_settings(5) == again  # no changes: no write, same result

    await store.close()
    reopened = await HistoryStore.open(db_path)
    try:
        assert await reopened.guild_settings(5) == again
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"no_such_setting": 1}, ValueError),
        ({"guild_id": 7}, TypeError),  # guild_id is the argument itself, not a setting
        ({"max_waiting_per_user": -1}, ValueError),
        ({"max_waiting_per_user": "3"}, TypeError),
        ({"max_jobs_per_minute": True}, TypeError),
        ({"image_safety": 1}, TypeError),
        ({"image_safety": "maybe"}, ValueError),
        ({"blocked_words": "gore"}, TypeError),
        ({"blocked_words": ["ok", 3]}, TypeError),
        ({"image_channels": [1, "2"]}, TypeError),
        ({"max_waiting_per_user": 9, "typo_field": 1}, ValueError),
    ],
)
async def test_update_guild_settings_rejects_bad_changes(
    store: HistoryStore, changes: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await store.update_guild_settings(5, **changes)
    assert await store.guild_settings(5) == GuildSettings(guild_id=5, image_channels=frozenset())


async def test_image_channels(store: HistoryStore) -> None:
    await store.add_image_channel(5, 501)
    await store.add_image_channel(5, 502)
    await store.add_image_channel(5, 502)  # twice is fine
    await store.add_image_channel(6, 601)
    assert (await store.guild_settings(5)).image_channels == frozenset({501, 502})
    assert (await store.guild_settings(6)).image_channels == frozenset({601})
    assert await store.remove_image_channel(5, 501) is True
    assert await store.remove_image_channel(5, 501) is False
    assert await store.remove_image_channel(6, 502) is False
    assert (await store.guild_settings(5)).image_channels == frozenset({502})

    replaced = await store.update_guild_settings(5, image_channels={700, 701})
    assert replaced.image_channels == frozenset({700, 701})
    assert (await store.guild_settings(5)).image_channels == frozenset({700, 701})
    assert (await store.guild_settings(6)).image_channels == frozenset({601})


async def test_user_prefs(store: HistoryStore, db_path: Path) -> None:
    assert await store.user_prefs(1) == UserPrefs(user_id=1)
    prefs = await store.update_user_prefs(1, aspect="16:9", negative_prompt="blurry", dm_results=True)
    assert prefs == UserPrefs(user_id=1, aspect="16:9", negative_prompt="blurry", dm_results=True)
    prefs = await store.update_user_prefs(1, style_suffix="oil painting", final_model="sdxl", aspect=None)
    assert prefs == UserPrefs(
        user_id=1, negative_prompt="blurry", style_suffix="oil painting", final_model="sdxl", dm_results=True
    )
    assert await store.user_prefs(1) == prefs
    assert await store.user_prefs(2) == UserPrefs(user_id=2)

    with pytest.raises(ValueError, match="colour"):
        await store.update_user_prefs(1, colour="blue")
    with pytest.raises(TypeError):
        await store.update_user_prefs(1, dm_results="yes")
    with pytest.raises(TypeError):
        await store.update_user_prefs(1, aspect=16)
    assert await store.user_prefs(1) == prefs

    await store.close()
    reopened = await HistoryStore.open(db_path)
    try:
        assert await reopened.user_prefs(1) == prefs
    finally:
        await reopened.close()
