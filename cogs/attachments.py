"""Files members upload to a command or an image channel: limits first, then the download, then the checks.

Order, cheapest first, so a member over a limit or a hostile file costs no CPU:

1. :func:`upload_turn`: the member's limits (jobs waiting, jobs a minute, the queue, their hourly upload
   budget: ``Admission.precheck``) and one upload in flight per member (``core.upload_gate``).
2. :func:`read_image`: what Discord declares (bytes, type, pixels), the download with a time limit, then
   ``core.attachments`` in the upload gate's own decode pool (the file's header is checked before decoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import discord

from core.attachments import check_declared, normalize_image, normalize_mask
from core.echo import quoted
from core.limits import Refusal
from core.origins import Origin

if TYPE_CHECKING:
    from core.jobs import JobService

log = logging.getLogger(__name__)

ATTACHMENT_TIMEOUT_S = 20.0  # an interaction is answered before the download starts


@contextlib.asynccontextmanager
async def upload_turn(jobs: JobService, origin: Origin) -> AsyncIterator[None]:
    """Around reading a member's uploads: their limits are checked first, and a second upload of theirs
    meanwhile is refused. Raises Refusal."""
    await jobs.admission.precheck(origin, await jobs.checks.guild_of(origin))
    with jobs.uploads.turn(origin.user_id):
        yield


async def read_image(attachment: discord.Attachment, *, what: str, jobs: JobService) -> bytes:
    """Download and check an uploaded image (or mask); normalized bytes (JPEG, a mask PNG), or :class:`Refusal`."""
    check_declared(
        filename=attachment.filename,
        size=attachment.size,
        content_type=attachment.content_type,
        width=attachment.width,
        height=attachment.height,
    )
    try:
        data = await asyncio.wait_for(attachment.read(), ATTACHMENT_TIMEOUT_S)
    except (discord.HTTPException, asyncio.TimeoutError) as e:
        log.info("could not download attachment %s: %s", attachment.id, e)
        raise Refusal(f"I could not download {quoted(attachment.filename)}; try again.") from None
    if what == "mask":
        return await jobs.uploads.run(normalize_mask, data)
    return await jobs.uploads.run(normalize_image, data, what=what)
