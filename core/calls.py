"""One Discord call, bounded: never cancelled, never waited for past its bound; and the errors a delivery raises.

Used by every room that talks to Discord (``core.delivery``, ``core.origins``, ``core.direct``, the
runner, the buttons); ``core.delivery`` imports these names for its callers too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import discord

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
CALL_TIMEOUT_S = 30.0  # the longest one Discord call is waited for (discord.py's own 429 retries included)

T = TypeVar("T")


class DeliveryError(Exception):
    """A result could not be posted anywhere; the message says why, for logs and the user.

    ``late_posts``: channel posts past their bound that go on, and may still land: the caller records one that does.
    """

    late_posts: tuple[asyncio.Future[discord.Message], ...] = ()


class CallTimeout(DeliveryError):
    """Discord did not answer a call within its bound; the call goes on in the background."""


def forbidden_text(channel_id: int) -> str:
    return f"I may not post or attach files in <#{channel_id}> (missing Send Messages or Attach Files)."


@contextlib.contextmanager
def posting_in(channel_id: int) -> Iterator[None]:
    """Around a post in channel ``channel_id``: a channel gone or closed to us becomes the DeliveryError users read."""
    try:
        yield
    except discord.NotFound as e:
        raise DeliveryError(f"The channel <#{channel_id}> no longer exists.") from e
    except discord.Forbidden as e:
        raise DeliveryError(forbidden_text(channel_id)) from e


async def bounded(
    call: Awaitable[T], timeout: float, what: str, *, on_late: Callable[[asyncio.Task[T]], None] | None = None
) -> T:
    """Await a Discord call for at most ``timeout`` s without ever cancelling it; raises CallTimeout past that.

    discord.py's webhook adapter holds one lock per interaction token while it sleeps on a 429, and
    releases it after an ``await`` in its ``__aexit__``: a call cancelled there (``asyncio.wait_for``,
    or a cancelled job task) leaves the lock held, and every later call with that token waits forever.
    So the call runs in a task of its own, shielded: past the bound, or when the caller is cancelled,
    nobody waits for it any more, it finishes in the background (``on_late`` is given its task) and its
    outcome is logged.
    """
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        raise CallTimeout(f"Discord did not answer {what} within {timeout:g} s.") from None
    finally:
        if not task.done():
            task.add_done_callback(functools.partial(_log_late, what))
            if on_late is not None:
                on_late(task)


def _log_late(what: str, task: asyncio.Task[Any]) -> None:
    """The outcome of a call nobody waits for any more (retrieved, so it is not reported as lost)."""
    if task.cancelled():
        log.info("%s was cancelled after its bound", what)
    elif (error := task.exception()) is not None:
        log.info("%s failed after its bound: %r", what, error)
    else:
        log.info("%s went through after its bound", what)
