"""/prefer defaults in the job service: what fills an empty option, what is refused, what the row keeps, DMs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.history import HistoryStore
from core.jobs import JobService
from core.limits import MAX_STYLE_SUFFIX_CHARS, Refusal, check_style_suffix, with_style
from core.settings import BotSettings
from engine.api import MAX_PROMPT_CHARS, FinalRequest
from tests.core.doubles import FakeEngine, RecordingOrigin, eventually, png


@pytest.fixture
async def store(tmp_path):
    store = await HistoryStore.open(tmp_path / "history.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def engine(tmp_path):
    return FakeEngine(str(tmp_path / "history.sqlite3"))


class DirectMessages:
    """Records what the service DMs; ``open=False`` behaves like a member with closed DMs."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, list[tuple[str, bytes]]]] = []
        self.open = True

    async def __call__(self, client, user_id, content, files) -> bool:
        if not self.open:
            return False
        self.sent.append((user_id, content, list(files)))
        return True


@pytest.fixture
def dms():
    return DirectMessages()


@pytest.fixture
async def service(store, engine, dms, tmp_path):
    from core.inputs import InputStore

    service = JobService(
        client=None,  # type: ignore[arg-type]
        store=store,
        engine=engine,
        settings=BotSettings.model_construct(  # model_construct: faster than a user may set, unchecked
            token=SecretStr("test"), progress_interval=0.01, queue_update_interval=0.02
        ),
        direct_message=dms,
        inputs=InputStore(tmp_path / "inputs"),
    )
    yield service
    await service.shutdown(0.0)


# --------------------------------------------------------------------------- the pure checks


def test_style_suffix_is_cleaned_and_joined_with_a_comma():
    assert check_style_suffix(", watercolor ") == "watercolor"
    assert check_style_suffix("  ") is None and check_style_suffix(None) is None
    assert with_style("a fox", "watercolor") == "a fox, watercolor"
    assert with_style("a fox, ", "watercolor") == "a fox, watercolor"
    assert with_style("a fox, Watercolor", "watercolor") == "a fox, Watercolor"  # already there: not twice
    assert with_style("a fox", None) == "a fox"


def test_style_suffix_bounds():
    with pytest.raises(Refusal, match=f"limit is {MAX_STYLE_SUFFIX_CHARS}"):
        check_style_suffix("x" * (MAX_STYLE_SUFFIX_CHARS + 1))
    fits = "p" * (MAX_PROMPT_CHARS - len(", watercolor"))
    assert len(with_style(fits, "watercolor")) == MAX_PROMPT_CHARS
    with pytest.raises(Refusal, match="with your style suffix .* 1,001 characters.*/prefer reset"):
        with_style(fits + "p", "watercolor")


# --------------------------------------------------------------------------- storing defaults


async def test_update_prefs_checks_each_value_and_stores_nothing_on_a_refusal(service, store):
    prefs = await service.update_prefs(
        1, aspect="16:9", negative_prompt=" blurry ", style_suffix=", ink", final_model="SDXL", dm_results=True
    )
    assert (prefs.aspect, prefs.negative_prompt, prefs.style_suffix, prefs.final_model, prefs.dm_results) == (
        "16:9",
        "blurry",
        "ink",
        "sdxl",
        True,
    )
    with pytest.raises(Refusal, match="Unknown aspect ratio '5:1'"):
        await service.update_prefs(1, aspect="5:1", style_suffix="oil")
    with pytest.raises(Refusal, match="Unknown model 'dall-e'"):
        await service.update_prefs(1, final_model="dall-e")
    with pytest.raises(Refusal, match="limit is 200"):
        await service.update_prefs(1, style_suffix="y" * 201)
    assert (await store.user_prefs(1)).style_suffix == "ink"  # the refused call changed nothing
    reset = await service.update_prefs(1, aspect=None, negative_prompt=None, dm_results=None)
    assert (reset.aspect, reset.negative_prompt, reset.dm_results, reset.style_suffix) == (None, None, False, "ink")


# --------------------------------------------------------------------------- applying them


async def test_imagine_fills_empty_options_from_prefs_and_the_row_keeps_the_effective_values(service, store, engine):
    await service.update_prefs(1, aspect="16:9", negative_prompt="blurry", style_suffix="watercolor")
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=5)
    assert origin.refusals == []
    request = engine.item(job.id).request
    assert (request.prompt, request.negative_prompt, (request.width, request.height)) == (
        "a red fox, watercolor",
        "blurry",
        (704, 384),
    )
    row = await store.get_job(job.id)
    assert (row.prompt, row.negative_prompt, row.params["aspect"]) == ("a red fox, watercolor", "blurry", "16:9")
    assert row.params["prefs"] == ["aspect", "negative_prompt", "style_suffix"]

    # What the user gives wins; the suffix is still appended.
    mine = await service.imagine(origin, prompt="a cat", negative_prompt="dogs", aspect="1:1", seed=5)
    request = engine.item(mine.id).request
    assert (request.prompt, request.negative_prompt, request.width) == ("a cat, watercolor", "dogs", 512)

    # Another user is untouched.
    other = await service.imagine(RecordingOrigin(user_id=2), prompt="a cat", seed=5)
    row = await store.get_job(other.id)
    assert (row.prompt, row.negative_prompt, "prefs" in row.params) == ("a cat", "", False)


async def test_a_reroll_repeats_the_stored_prompt_without_adding_the_suffix_again(service, store, engine):
    await service.update_prefs(1, style_suffix="watercolor")
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=5)
    engine.finish(job.id)
    await eventually(lambda: origin.deliveries[0].posts)
    await service.update_prefs(1, style_suffix="oil paint")  # changed since: the reroll must not pick it up
    reroll = await service.reroll(RecordingOrigin(), job.id)
    assert engine.item(reroll.id).request.prompt == "a red fox, watercolor"


async def test_final_uses_the_preferred_model_unless_one_is_chosen(service, engine):
    await service.update_prefs(1, final_model="sdxl", aspect="9:16")
    job = await service.final(RecordingOrigin(), prompt="a lighthouse", seed=3)
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest) and request.model == "sdxl" and request.height > request.width
    chosen = await service.final(RecordingOrigin(), prompt="a lighthouse", seed=3, model="ssd-1b")
    assert engine.item(chosen.id).request.model == "ssd-1b"


async def test_upscale_uses_the_clickers_preferred_model(service, store, engine):
    origin = RecordingOrigin()
    drafts = await service.imagine(origin, prompt="a fox", seed=1)
    engine.finish(drafts.id)
    await eventually(lambda: origin.deliveries[0].posts)
    await service.update_prefs(1, final_model="sdxl")
    final = await service.upscale(RecordingOrigin(), drafts.id, 0)
    assert engine.item(final.id).request.model == "sdxl"
    assert (await store.get_job(final.id)).params["prefs"] == ["final_model"]


async def test_the_suffix_cannot_push_a_prompt_over_the_limit_or_past_blocked_words(service, store, engine):
    await service.update_prefs(1, style_suffix="watercolor")
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="p" * (MAX_PROMPT_CHARS - 5)) is None
    assert "with your style suffix" in origin.refusals[-1] and engine.submitted == []
    await service.update_guild_settings(10, blocked_words=("watercolor",))
    assert await service.final(origin, prompt="a fox") is None
    assert "watercolor" in origin.refusals[-1] and engine.submitted == []


async def test_an_image_keeps_its_own_aspect_despite_the_preferred_one(service, engine):
    await service.update_prefs(1, aspect="16:9")
    job = await service.imagine(RecordingOrigin(), prompt="a fox", image=png(512, 512), seed=1)
    request = engine.item(job.id).request
    assert request.width == request.height


# --------------------------------------------------------------------------- results by DM


async def test_results_come_by_dm_too_when_the_author_asked(service, store, engine, dms):
    await service.update_prefs(1, dm_results=True)
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=7)
    quiet = await service.imagine(RecordingOrigin(user_id=2), prompt="a cat", seed=7)
    engine.finish(job.id)
    engine.finish(quiet.id)
    await eventually(lambda: dms.sent)
    done = await eventually(lambda: origin.deliveries[0].posts)
    user_id, content, files = dms.sent[0]
    assert user_id == 1 and [name for name, _ in files] == [name for name, _ in done[0][1]]
    assert "a red fox" in content and "`7`" in content and "Steps: 1" in content
    assert "https://discord.com/channels/10/100/" in content
    await eventually(lambda: service.active() == {})
    assert len(dms.sent) == 1  # user 2 did not ask


async def test_closed_dms_do_not_disturb_the_delivery(service, store, engine, dms):
    await service.update_prefs(1, dm_results=True)
    dms.open = False
    origin = RecordingOrigin()
    job = await service.imagine(origin, prompt="a red fox", seed=7)
    engine.finish(job.id)
    await eventually(lambda: origin.deliveries[0].posts)
    row = await store.get_job(job.id)
    assert row.status == "done" and dms.sent == []
