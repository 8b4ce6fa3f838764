"""Live previews: a final shows a rough picture of its latents while it runs, then the final replaces it."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests.e2e.support import BASE_ENV, RunningBot, result_of, status_texts
from tests.fakediscord.records import DEFERRED_CHANNEL_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


# A preview at every step, edits at most every 0.2 s: some previews are skipped, some shown.
BOT_ENV = {**BASE_ENV, "FINAL_STEPS": "6", "PREVIEW_EVERY": "1", "PROGRESS_INTERVAL": "0.2"}


async def test_a_final_shows_previews_before_the_result(bot: RunningBot):
    interaction = await bot.fake.slash("final", {"prompt": "a lighthouse at dusk", "seed": 5})
    assert await interaction.wait_callback() == DEFERRED_CHANNEL_MESSAGE
    final = await result_of(interaction, files=1)

    # The message showed a preview image while it ran; the result replaced it with the final alone.
    assert any("preview.png" in snapshot.attachment_names for snapshot in final.history)
    assert [a.filename for a in final.attachments] == ["final.png"]
    assert final.attachments[0].image().size == (1024, 1024)
    assert any(re.search(r"\b\d+\s*/\s*6\b", text) for text in status_texts(final)), status_texts(final)

    previews = [data for call in bot.fake.calls for name, data in call.files if name == "preview.png"]
    assert previews, "no preview was uploaded"
    with Image.open(io.BytesIO(previews[0])) as image:
        assert image.format == "PNG" and max(image.size) == 256


async def test_drafts_carry_no_preview(bot: RunningBot):
    interaction = await bot.fake.slash("imagine", {"prompt": "a quick sketch", "seed": 9})
    drafts = await result_of(interaction, files=4)
    assert not any("preview.png" in snapshot.attachment_names for snapshot in drafts.history)
