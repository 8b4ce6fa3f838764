"""Direct messages: a copy of a result to its author (``/prefer dm:true``, ✉️), and message links."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import discord

from core.calls import CALL_TIMEOUT_S, NO_MENTIONS, CallTimeout, bounded
from core.echo import fit

log = logging.getLogger(__name__)


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """The jump link of a message (``@me`` for a DM channel)."""
    return f"https://discord.com/channels/{guild_id if guild_id is not None else '@me'}/{channel_id}/{message_id}"


async def send_direct(
    client: discord.Client,
    user_id: int,
    content: str,
    files: Sequence[tuple[str, bytes]],
    *,
    timeout: float = CALL_TIMEOUT_S,
) -> bool:
    """DM ``content`` and ``files`` to a user; returns whether it was sent.

    Closed DMs (Discord answers 403, "Cannot send messages to this user"), calls Discord does not
    answer within ``timeout`` (``core.delivery.bounded``) and other failures are logged at info and
    end here: nobody asked for this message in a channel, so nobody is told.
    """
    try:
        user = client.get_user(user_id)
        if user is None:
            user = await bounded(client.fetch_user(user_id), timeout, "a user lookup")
        await bounded(
            user.send(
                fit(content),
                files=[discord.File(io.BytesIO(data), filename=name) for name, data in files],
                allowed_mentions=NO_MENTIONS,
            ),
            timeout,
            "a direct message",
        )
    except discord.Forbidden as e:
        log.info("user %s takes no direct messages from me (%s); not sent", user_id, e.code)
        return False
    except (discord.HTTPException, CallTimeout) as e:
        log.info("could not DM user %s: %s", user_id, e)
        return False
    return True
