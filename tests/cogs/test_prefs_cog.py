"""/prefer, ⭐ favourites and ✉️ copies by DM: who may do what, and what is ignored.

The job service is the real one (with the fake engine) over a real store on a temporary file;
the bot, the interaction, the channel and the DM recipient are thin doubles.
"""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import AsyncMock

import discord
import pytest

from cogs.history import history_page
from cogs.prefs import PrefsCog, prefs_text
from cogs.ui.layout import Layout
from core.history import HistoryStore, UserPrefs
from core.jobs import JobService
from core.limits import Refusal
from core.settings import BotSettings
from tests.core.doubles import FakeEngine
from tests.core.records import new_job

BOT_ID = 999
AUTHOR = 1
STRANGER = 2
GUILD = 10
CHANNEL = 100
RESULT_MESSAGE = 7000


class Attachment:
    def __init__(self, filename: str, data: bytes) -> None:
        self.filename = filename
        self.data = data

    async def read(self) -> bytes:
        return self.data


class Channel:
    def __init__(self) -> None:
        self.message = SimpleNamespace(
            content="**a fox** — <@1>\nFinal · seed `1` · ssd-1b · 28 steps · 1024×1024 · job #1",
            attachments=[Attachment("final.png", b"\x89PNG one")],
        )
        self.fetched: list[int] = []

    async def fetch_message(self, message_id: int):
        self.fetched.append(message_id)
        if message_id != RESULT_MESSAGE:
            raise discord.NotFound(SimpleNamespace(status=404, reason="Not Found"), "Unknown Message")
        return self.message


class Recipient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []
        self.closed = False

    async def send(self, content, *, files, allowed_mentions):
        if self.closed:
            raise discord.Forbidden(
                SimpleNamespace(status=403, reason="Forbidden"),
                {"code": 50007, "message": "Cannot send messages to this user"},
            )
        self.sent.append((content, [f.filename for f in files]))


class BotDouble:
    def __init__(self, store: HistoryStore) -> None:
        self.user = discord.Object(BOT_ID)
        self.store = store
        self.engine = FakeEngine()
        self.jobs = JobService(
            client=self,  # type: ignore[arg-type]
            store=store,
            engine=self.engine,
            settings=BotSettings(token="t"),
            controls=Layout(),
        )
        self.channel = Channel()
        self.recipients: dict[int, Recipient] = {}

    def get_partial_messageable(self, channel_id: int, *, guild_id: int | None = None) -> Channel:
        return self.channel

    def get_user(self, user_id: int) -> Recipient:
        return self.recipients.setdefault(user_id, Recipient())


@pytest.fixture
def bot(store):
    return BotDouble(store)


@pytest.fixture
def cog(bot):
    return PrefsCog(bot)  # type: ignore[arg-type]


async def make_job(store: HistoryStore, *, user_id: int = AUTHOR, message: int = RESULT_MESSAGE) -> int:
    job = await store.create_job(
        new_job(
            kind="final", mode="final", guild_id=GUILD, channel_id=CHANNEL, user_id=user_id,
            prompt="a fox", model="ssd-1b", width=1024, height=1024, seed=1, count=1,
        )
    )
    await store.set_result_message(job.id, CHANNEL, message)
    await store.finish_job(job.id, seeds=[1], timings={}, steps=28)  # as JobService records a final
    return job.id


def reaction(emoji: str, *, user: int, event: str = "REACTION_ADD", message: int = RESULT_MESSAGE):
    data = {"message_id": message, "channel_id": CHANNEL, "user_id": user, "guild_id": GUILD, "type": 0}
    return discord.RawReactionActionEvent(data, discord.PartialEmoji(name=emoji), event)


def interaction(user_id: int = AUTHOR):
    return SimpleNamespace(user=discord.Object(user_id), response=SimpleNamespace(send_message=AsyncMock()))


# --------------------------------------------------------------------------- /prefer


async def test_prefer_set_show_and_reset(cog, store):
    ask = interaction()
    await cog.prefer_set.callback(cog, ask, aspect="16:9", style=", watercolor", dm=True)
    text = ask.response.send_message.await_args.args[0]
    assert "Aspect: 16:9" in text and "Style suffix: “, watercolor”" in text and "Results by DM: on" in text
    assert ask.response.send_message.await_args.kwargs["ephemeral"] is True
    assert (await store.user_prefs(AUTHOR)).style_suffix == "watercolor"

    await cog.prefer_reset.callback(cog, ask, what="style")
    prefs = await store.user_prefs(AUTHOR)
    assert (prefs.style_suffix, prefs.aspect, prefs.dm_results) == (None, "16:9", True)
    await cog.prefer_reset.callback(cog, ask, what=None)
    assert await store.user_prefs(AUTHOR) == UserPrefs(user_id=AUTHOR)

    await cog.prefer_show.callback(cog, ask)
    shown = ask.response.send_message.await_args.args[0]
    assert "Aspect: 1:1 (bot default)" in shown and "Final model: ssd-1b (bot default)" in shown


async def test_prefer_refusals_are_specific(cog, store):
    with pytest.raises(Refusal, match="Unknown aspect ratio “5:1”"):
        await cog.prefer_set.callback(cog, interaction(), aspect="5:1")
    with pytest.raises(Refusal, match="Unknown model “dall-e”"):
        await cog.prefer_set.callback(cog, interaction(), model="dall-e")
    with pytest.raises(Refusal, match="limit is 200"):
        await cog.prefer_set.callback(cog, interaction(), style="w" * 201)
    with pytest.raises(Refusal, match="at least one"):
        await cog.prefer_set.callback(cog, interaction())
    assert await store.user_prefs(AUTHOR) == UserPrefs(user_id=AUTHOR)


def test_prefs_text_escapes_what_users_typed():
    text = prefs_text(UserPrefs(user_id=1, negative_prompt="@everyone *bold*"), default_model="ssd-1b")
    assert "@\u200beveryone" in text and "\\*bold\\*" in text


# --------------------------------------------------------------------------- ⭐


async def test_star_by_the_author_marks_and_unmarks_a_favourite(cog, store):
    job_id = await make_job(store)
    await cog.on_raw_reaction_add(reaction("⭐", user=AUTHOR))
    assert (await store.get_job(job_id)).favorite
    jobs, total = await store.history(user_id=AUTHOR, guild_id=GUILD, favorites=True)
    assert [j.id for j in jobs] == [job_id] and total == 1
    await cog.on_raw_reaction_remove(reaction("⭐", user=AUTHOR, event="REACTION_REMOVE"))
    assert not (await store.get_job(job_id)).favorite


async def test_star_by_anyone_else_or_elsewhere_is_ignored(cog, store):
    job_id = await make_job(store)
    await cog.on_raw_reaction_add(reaction("⭐", user=STRANGER))
    await cog.on_raw_reaction_add(reaction("⭐", user=BOT_ID))
    await cog.on_raw_reaction_add(reaction("⭐", user=AUTHOR, message=RESULT_MESSAGE + 1))  # not a job message
    await cog.on_raw_reaction_add(reaction("👍", user=AUTHOR))
    assert not (await store.get_job(job_id)).favorite
    await cog.on_raw_reaction_add(reaction("⭐", user=AUTHOR))
    await cog.on_raw_reaction_remove(reaction("⭐", user=STRANGER, event="REACTION_REMOVE"))
    assert (await store.get_job(job_id)).favorite  # a stranger taking their ⭐ off changes nothing


async def test_history_favorites_lists_only_starred_jobs_with_their_own_paging_ids(cog, store):
    starred = await make_job(store)
    await make_job(store, message=RESULT_MESSAGE + 5)
    await cog.on_raw_reaction_add(reaction("⭐", user=AUTHOR))
    ask = SimpleNamespace(guild_id=GUILD, permissions=discord.Permissions.none())
    text, view = await history_page(ask, store, viewer_id=AUTHOR, target_id=AUTHOR, page=1, search=None, favorites=True)
    assert "Favourites of" in text and f"`#{starred}`" in text and "1 job" in text and "⭐" in text
    assert [item.custom_id for item in view.children][:2] == ["histf:1:1:0:", "histf:1:1:2:"]
    text, _ = await history_page(
        ask, store, viewer_id=STRANGER, target_id=STRANGER, page=1, search=None, favorites=True
    )
    assert "No favourites yet" in text


# --------------------------------------------------------------------------- ✉️


@pytest.mark.parametrize("emoji", ["✉️", "✉"])
async def test_envelope_dms_the_reactor_the_images_with_parameters(cog, bot, store, emoji):
    job_id = await make_job(store)
    await cog.on_raw_reaction_add(reaction(emoji, user=STRANGER))
    ((content, names),) = bot.recipients[STRANGER].sent
    assert names == ["final.png"]
    assert "a fox" in content and "seed `1`" in content and "ssd-1b" in content and "28 steps" in content
    assert f"job #{job_id}" in content and f"https://discord.com/channels/{GUILD}/{CHANNEL}/{RESULT_MESSAGE}" in content


async def test_envelope_is_quiet_with_closed_dms_and_does_not_repeat_at_once(cog, bot, store):
    await make_job(store)
    bot.get_user(STRANGER).closed = True
    await cog.on_raw_reaction_add(reaction("✉️", user=STRANGER))  # Forbidden: logged, nothing raised
    await cog.on_raw_reaction_add(reaction("✉️", user=AUTHOR))
    await cog.on_raw_reaction_add(reaction("✉️", user=AUTHOR))  # again within the cool-down: one copy
    assert len(bot.recipients[AUTHOR].sent) == 1 and bot.recipients[STRANGER].sent == []


async def test_envelope_on_a_message_without_images_sends_nothing(cog, bot, store):
    await make_job(store)
    bot.channel.message.attachments = []
    await cog.on_raw_reaction_add(reaction("✉️", user=AUTHOR))
    assert AUTHOR not in bot.recipients


async def test_envelopes_on_many_results_at_once_are_throttled_per_member(cog, bot, store):
    messages = [RESULT_MESSAGE + i for i in range(8)]
    for message in messages:
        await make_job(store, message=message)
    bot.channel.fetch_message = AsyncMock(return_value=bot.channel.message)  # every result has its image
    for message in messages:
        await cog.on_raw_reaction_add(reaction("✉️", user=AUTHOR, message=message))
    await cog.on_raw_reaction_add(reaction("✉️", user=STRANGER, message=messages[0]))
    assert len(bot.recipients[AUTHOR].sent) == 5
    assert len(bot.recipients[STRANGER].sent) == 1  # another member is not held back
