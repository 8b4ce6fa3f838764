"""Files members upload to a command or an image channel: downloaded with a time limit, then checked.

The checks themselves are ``core.attachments`` (torch-free, in a worker thread); this is the Discord side.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from core.attachments import check_declared, normalize_image, normalize_mask
from core.echo import quoted
from core.limits import Refusal

log = logging.getLogger(__name__)

ATTACHMENT_TIMEOUT_S = 20.0  # an interaction is answered before the download starts


async def read_image(attachment: discord.Attachment, *, what: str) -> bytes:
    """Download and check an uploaded image (or mask); normalized PNG bytes, or :class:`Refusal`."""
    check_declared(filename=attachment.filename, size=attachment.size, content_type=attachment.content_type)
    try:
        data = await asyncio.wait_for(attachment.read(), ATTACHMENT_TIMEOUT_S)
    except (discord.HTTPException, asyncio.TimeoutError) as e:
        log.info("could not download attachment %s: %s", attachment.id, e)
        raise Refusal(f"I could not download {quoted(attachment.filename)}; try again.") from None
    if what == "mask":
        return await asyncio.to_thread(normalize_mask, data)
    return await asyncio.to_thread(normalize_image, data, what=what)
