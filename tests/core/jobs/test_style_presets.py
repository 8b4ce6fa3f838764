"""Style presets in the job rooms: a server's changes (core/jobs/styles.py) and ``style=`` on /imagine and /final."""

from __future__ import annotations

import pytest

from core import canvas
from core.history import JobParams
from core.jobs import plans
from core.limits import Refusal
from core.styles import DEFAULT_STYLES, MAX_GUILD_STYLES
from engine.api import EngineOffer, FinalRequest
from tests.core.doubles import RecordingOrigin, eventually, png
from tests.core.jobs.support import wait_status
from tests.core.records import job_record

GUILD = 10  # RecordingOrigin's server
WATERCOLOR = next(s for s in DEFAULT_STYLES if s.name == "watercolor")
DEFAULT_NAMES = sorted(s.name for s in DEFAULT_STYLES)


async def names(service, guild_id: int = GUILD) -> list[str]:
    return [s.name for s in await service.styles.available(guild_id)]


# --------------------------------------------------------------------------- a server's styles


async def test_every_server_starts_with_the_defaults_and_changes_only_its_own(service):
    assert await names(service) == DEFAULT_NAMES
    style, before = await service.styles.add(GUILD, "Noir", "black and white, hard shadows", "color")
    assert (style.name, style.prompt_suffix, style.negative_prompt, before) == (
        "noir", "black and white, hard shadows", "color", None,
    )
    assert "noir" in await names(service) and "noir" not in await names(service, 11)


async def test_a_server_replaces_removes_and_restores_a_default(service):
    style, before = await service.styles.add(GUILD, "watercolor", "ink wash")
    assert before == WATERCOLOR and not style.default
    assert (await service.styles.resolve(GUILD, "watercolor")).prompt_suffix == "ink wash"
    removed = await service.styles.remove(GUILD, "watercolor")
    assert removed.prompt_suffix == "ink wash"
    assert "watercolor" not in await names(service)
    with pytest.raises(Refusal, match="no style “watercolor”"):
        await service.styles.resolve(GUILD, "watercolor")
    back, before = await service.styles.add(GUILD, "watercolor")  # no suffix: the bot's own again
    assert back == WATERCOLOR and before is None
    assert await service.styles.resolve(GUILD, "watercolor") == WATERCOLOR
    assert await service.styles.resolve(11, "watercolor") == WATERCOLOR  # other servers never changed


async def test_removing_a_servers_own_style_forgets_it(service, store):
    await service.styles.add(GUILD, "noir", "black and white")
    await service.styles.remove(GUILD, "NOIR")
    assert await store.guild_styles(GUILD) == []
    with pytest.raises(Refusal, match="no style “noir”.*Styles here: 3d-render"):
        await service.styles.remove(GUILD, "noir")


@pytest.mark.parametrize(
    ("name", "suffix", "message"),
    [
        ("neon lights", "neon", "one word"),
        ("noir", None, "needs a prompt_suffix"),
        ("noir", "x" * 201, "201 characters"),
    ],
)
async def test_bad_styles_are_refused_and_nothing_is_stored(service, store, name, suffix, message):
    with pytest.raises(Refusal, match=message):
        await service.styles.add(GUILD, name, suffix)
    assert await store.guild_styles(GUILD) == []


async def test_a_server_keeps_at_most_so_many_styles(service):
    for i in range(MAX_GUILD_STYLES):
        await service.styles.add(GUILD, f"s{i}", "x")
    with pytest.raises(Refusal, match=f"{MAX_GUILD_STYLES} styles of its own"):
        await service.styles.add(GUILD, "one-more", "x")
    await service.styles.add(GUILD, "s0", "y")  # replacing one still works


# --------------------------------------------------------------------------- style= on a new prompt


async def test_imagine_with_a_style_adds_its_texts_and_the_row_names_it(service, store, engine):
    job = await service.imagine(RecordingOrigin(), prompt="a red fox", negative_prompt="people", style="watercolor")
    request = engine.item(job.id).request
    assert request.prompt == f"a red fox, {WATERCOLOR.prompt_suffix}"
    assert request.negative_prompt == f"people, {WATERCOLOR.negative_prompt}"
    row = await store.get_job(job.id)
    assert (row.prompt, row.negative_prompt) == (request.prompt, request.negative_prompt)
    assert row.params.style == "watercolor"


async def test_a_style_replaces_the_members_own_suffix_but_joins_their_negative(service, store, engine):
    await service.prefs.update(1, style_suffix="oil paint", negative_prompt="blurry")
    job = await service.final(RecordingOrigin(), prompt="a lighthouse", style="Watercolor")
    request = engine.item(job.id).request
    assert isinstance(request, FinalRequest)
    assert request.prompt == f"a lighthouse, {WATERCOLOR.prompt_suffix}" and "oil paint" not in request.prompt
    assert request.negative_prompt == f"blurry, {WATERCOLOR.negative_prompt}"
    row = await store.get_job(job.id)
    assert (row.params.style, row.params.prefs) == ("watercolor", ("negative_prompt",))


async def test_an_unknown_style_is_refused_naming_it_and_nothing_is_stored(service, store, engine):
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="a fox", style="neon") is None
    assert len(origin.refusals) == 1 and "“neon”" in origin.refusals[0] and "watercolor" in origin.refusals[0]
    assert engine.submitted == [] and (await store.history(user_id=1))[1] == 0
    assert await service.final(origin, prompt="a fox", style="pixel art") is None
    assert "one word" in origin.refusals[1] and engine.submitted == []


async def test_a_servers_style_is_held_to_its_blocked_words(service, store, engine):
    await service.guilds.update(GUILD, blocked_words=("gore",))
    await service.styles.add(GUILD, "splatter", "gore everywhere")
    origin = RecordingOrigin()
    assert await service.imagine(origin, prompt="a fox", style="splatter") is None
    assert "“gore”" in origin.refusals[0] and engine.submitted == []


async def test_reroll_u_and_v_repeat_the_styled_text_without_applying_it_again(service, store, engine):
    origin = RecordingOrigin()
    drafts = await service.imagine(origin, prompt="a red fox", seed=5, style="watercolor")
    engine.finish(drafts.id)
    await eventually(lambda: origin.deliveries[0].posts)
    await wait_status(store, drafts.id, "done")
    await service.styles.add(GUILD, "watercolor", "changed since")  # must not reach the copies
    reroll = await service.reroll(RecordingOrigin(), drafts.id)
    upscale = await service.final_of_draft(RecordingOrigin(), drafts.id, 2)
    variation = await service.variation(RecordingOrigin(), drafts.id, 1)
    for job in (reroll, upscale, variation):
        request = engine.item(job.id).request
        assert request.prompt == drafts.prompt == f"a red fox, {WATERCOLOR.prompt_suffix}"
        assert request.negative_prompt == WATERCOLOR.negative_prompt
        assert (await store.get_job(job.id)).params.style == "watercolor"


def test_vary_and_outpaint_of_a_styled_final_name_its_style_and_keep_its_text():
    final = job_record(
        id=4, kind="final", mode="final", model="ssd-1b", width=1024, height=1024, count=1, status="done",
        prompt="a fox, film noir", negative_prompt="color", params=JobParams(aspect="1:1", style="noir"),
    )
    source = png(1024, 1024)
    varied = plans.vary(final, source, "vary_subtle", EngineOffer())
    extended = plans.outpaint(final, canvas.outpaint(source, budget=1024 * 1024, zoom=1.5), "zoom15")
    for plan in (varied, extended):
        assert plan.fields["params"].style == "noir"
        assert (plan.request.prompt, plan.request.negative_prompt) == ("a fox, film noir", "color")
