"""Another member's job that started from its author's upload (/edit, /imagine image:, an image reference)
is made again (🔁, Remix, U, V, Vary, zoom) only by its author or a moderator: the upload was theirs to share."""

from __future__ import annotations

import pytest

from core.jobs.addons import Addons
from core.limits import Refusal
from tests.core.doubles import RecordingOrigin, png
from tests.core.jobs.support import wait_status

AUTHOR, OTHER = 1, 2


async def done(store, engine, job):
    engine.finish(job.id)
    return await wait_status(store, job.id, "done")


async def remake(service, action: str, origin: RecordingOrigin, job_id: int):
    if action == "reroll":
        return await service.reroll(origin, job_id)
    if action == "remix":
        return await service.remix(origin, job_id, prompt="the same, at night")
    if action == "u1":
        return await service.final_of_draft(origin, job_id, 0)
    assert action == "v1"
    return await service.variation(origin, job_id, 0)


@pytest.mark.parametrize("action", ["reroll", "remix", "u1", "v1"])
async def test_drafts_from_an_upload_are_remade_by_their_author_and_moderators_only(service, store, engine, action):
    drafts = await done(store, engine, await service.imagine(
        RecordingOrigin(user_id=AUTHOR), prompt="my living room", image=png(512, 512), seed=1
    ))
    submitted = len(engine.submitted)
    other = RecordingOrigin(user_id=OTHER)
    assert await remake(service, action, other, drafts.id) is None
    assert other.refusals == [
        f"Job #{drafts.id} started from an image its author uploaded; only they and moderators can make it again."
    ]
    assert len(engine.submitted) == submitted

    for allowed in (RecordingOrigin(user_id=AUTHOR), RecordingOrigin(user_id=OTHER, moderator=True)):
        assert await remake(service, action, allowed, drafts.id) is not None
        assert allowed.refusals == []


async def test_the_rule_follows_variations_of_an_upload_and_spares_prompt_only_jobs(service, store, engine):
    author = RecordingOrigin(user_id=AUTHOR)
    drafts = await done(store, engine, await service.imagine(author, prompt="my cat", image=png(512, 512)))
    variation = await done(store, engine, await service.variation(author, drafts.id, 2))
    assert variation.parent_index == 2
    other = RecordingOrigin(user_id=OTHER)
    assert await service.reroll(other, variation.id) is None
    assert "started from an image its author uploaded" in other.refusals[0]
    with pytest.raises(Refusal, match="its author uploaded"):  # the Remix button opens no form for it
        await service.remix_source(other, variation.id)

    plain = await done(store, engine, await service.imagine(author, prompt="a cat"))
    someone = RecordingOrigin(user_id=OTHER)
    assert await service.reroll(someone, plain.id) is not None
    assert await service.variation(someone, plain.id, 0) is not None
    assert someone.refusals == []


async def test_an_edit_is_not_remade_by_another_member(service, store, engine):
    edit = await done(store, engine, await service.edit(
        RecordingOrigin(user_id=AUTHOR), prompt="a red hat", image=png(512, 512), region=(25, 0, 50, 50)
    ))
    other = RecordingOrigin(user_id=OTHER)
    assert await service.reroll(other, edit.id) is None
    assert await service.remix(other, edit.id, prompt="a blue hat") is None
    assert len(other.refusals) == 2 and all("its author uploaded" in text for text in other.refusals)


async def test_vary_and_zoom_carry_a_reference_upload_only_for_its_author_and_moderators(service, store, engine):
    addons = Addons.from_options(reference=png(256, 256, (10, 200, 30)))
    final = await done(store, engine, await service.final(RecordingOrigin(user_id=AUTHOR), prompt="a fox",
                                                            addons=addons))
    other = RecordingOrigin(user_id=OTHER)
    assert await service.vary(other, final.id, "vary_subtle") is None
    assert await service.outpaint(other, final.id, "zoom2") is None
    assert len(other.refusals) == 2 and all("its author uploaded" in text for text in other.refusals)
    moderator = RecordingOrigin(user_id=OTHER, moderator=True)
    assert await service.vary(moderator, final.id, "vary_subtle") is not None and moderator.refusals == []
