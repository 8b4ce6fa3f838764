"""Where a request came from, and how to answer it.

An :class:`Origin` is the place a request came from: a slash command or button
(:class:`InteractionOrigin`) or a message or reaction in a channel (:class:`MessageOrigin`).
It answers refusals (ephemerally where Discord allows it) and acknowledges an accepted job,
which gives a :class:`core.delivery.Delivery`: the one message that shows the job's state and then its result.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord

from core import scope
from core.calls import CALL_TIMEOUT_S, NO_MENTIONS, CallTimeout, bounded, posting_in
from core.delivery import Delivery
from core.echo import fit
from core.history import JobRecord
from core.limits import Refusal
from core.throttle import UserThrottle

log = logging.getLogger(__name__)

INTERACTION_TTL_S = 15 * 60.0
PUBLIC_REFUSALS_PER_MINUTE = 3  # refusals one member can make the bot post in channels
REFUSAL_DELETE_AFTER_S = 30.0  # refusals posted in a channel (no ephemeral there) clean themselves up


def age_restricted(channel: object) -> bool:
    """Whether ``channel`` is age-restricted (NSFW); a thread follows its parent, unknown channels are not."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


class Origin(ABC):
    """Where a request came from: who asked, where, and how to answer them.

    Each Discord call is bounded by ``call_timeout`` (``core.delivery.bounded``: never cancelled).
    """

    call_timeout = CALL_TIMEOUT_S

    user_id: int
    guild_id: int | None
    channel_id: int
    age_restricted: bool
    source_message_id: int | None

    def job_fields(self) -> dict[str, Any]:
        """Fields of the stored job that say where it came from."""
        return {
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
            "source_message_id": self.source_message_id,
        }

    def note_job(self, job_id: int) -> None:  # noqa: B027 - a hook, empty unless the origin logs job ids
        """Remember the job id for error reports."""

    def moderates(self, job: JobRecord) -> bool:
        """Whether the user may act on ``job`` of another member as a moderator (``core.scope``)."""
        return False

    async def defer(self) -> None:  # noqa: B027 - a hook: only an interaction has a deadline to answer by
        """Answer at once before slow work (an interaction's "thinking…"); nothing to do elsewhere."""

    def expect_more(self) -> None:  # noqa: B027 - a hook: only an interaction answers more than once specially
        """More than one job will be acknowledged (a prompt's permutations): each gets a message of its own."""

    @abstractmethod
    async def refuse(self, text: str) -> None:
        """Tell the user why nothing happens (before anything was acknowledged)."""

    @abstractmethod
    async def acknowledge(self, content: str) -> Delivery:
        """Answer at once that the job is accepted; returns where its states and result go."""


class InteractionOrigin(Origin):
    """A slash command, a button or a select menu."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.user_id = interaction.user.id
        self.guild_id = interaction.guild_id
        self.channel_id = interaction.channel_id  # type: ignore[assignment]
        self.age_restricted = age_restricted(interaction.channel)
        # A button's message: where a result goes as a reply once the token has expired.
        self.source_message_id = interaction.message.id if interaction.message is not None else None
        self._deferred = False  # answered with defer() and nothing else yet
        self._deferred_message_id: int | None = None
        self._acknowledged = False  # a job's message is the interaction's own answer
        self._more = False  # more jobs follow (expect_more): each after the first gets a follow-up

    def job_fields(self) -> dict[str, Any]:
        fields = super().job_fields()
        fields["interaction_token"] = self.interaction.token
        fields["interaction_expires_at"] = self._token_expires_at()
        return fields

    def note_job(self, job_id: int) -> None:
        self.interaction.extras["job_id"] = job_id

    def moderates(self, job: JobRecord) -> bool:
        return scope.moderates(self.interaction.user, job)

    async def defer(self) -> None:
        """Answer Discord at once ("thinking…") before slow work such as downloading an upload.

        The answer is public, as the job's message will be; a refusal after it deletes the
        "thinking…" message and is sent ephemerally (:meth:`refuse`), since the first follow-up of
        a public defer would otherwise take its place in public.
        """
        if self.interaction.response.is_done():
            return
        callback = await bounded(
            self.interaction.response.defer(thinking=True), self.call_timeout, "the acknowledgement"
        )
        self._deferred = True
        self._deferred_message_id = getattr(callback, "message_id", None)

    async def refuse(self, text: str) -> None:
        text = fit(text)  # over 2,000 characters Discord refuses it, and the member hears nothing
        if self._deferred:
            self._deferred = False
            with contextlib.suppress(discord.HTTPException, CallTimeout):
                await bounded(self.interaction.delete_original_response(), self.call_timeout, "a deletion")
        answer: Awaitable[object]
        if self.interaction.response.is_done():
            answer = self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            answer = self.interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        try:
            await bounded(answer, self.call_timeout, "a refusal")
        except CallTimeout as e:
            log.info("refusal to user %s not answered in time (%s): %s", self.user_id, e, text)

    def expect_more(self) -> None:
        self._more = True

    async def acknowledge(self, content: str) -> Delivery:
        if self._acknowledged or (self.interaction.response.is_done() and not self._deferred):
            return await self._acknowledge_followup(content)
        if self._deferred:
            self._deferred = False
            message_id = self._deferred_message_id
            callback = None
        else:
            callback = await bounded(
                self.interaction.response.defer(thinking=True), self.call_timeout, "the acknowledgement"
            )
            message_id = getattr(callback, "message_id", None)
        if message_id is None:
            with contextlib.suppress(discord.HTTPException, CallTimeout):
                message_id = (
                    await bounded(self.interaction.original_response(), self.call_timeout, "the message lookup")
                ).id
        self._acknowledged = True
        if self._more:
            # Discord: the first follow-up after a defer replaces the "thinking…" message unless it was
            # edited; edited now, before this job's delivery exists, the next job's follow-up is its own.
            with contextlib.suppress(discord.HTTPException, CallTimeout):
                await bounded(
                    self.interaction.edit_original_response(content=fit(content), allowed_mentions=NO_MENTIONS),
                    self.call_timeout,
                    "the acknowledgement",
                )
        return self._delivery(message_id, interaction=self.interaction)

    async def _acknowledge_followup(self, content: str) -> Delivery:
        """A job after the first of one command: a follow-up message of its own, edited through the token."""
        message = await bounded(
            self.interaction.followup.send(fit(content), wait=True, allowed_mentions=NO_MENTIONS),
            self.call_timeout,
            "the acknowledgement",
        )
        return self._delivery(message.id, token=self.interaction.token)

    def _delivery(
        self, placeholder_id: int | None, *, interaction: discord.Interaction | None = None, token: str | None = None
    ) -> Delivery:
        """The Delivery of a message this interaction's webhook posted, edited through ``interaction`` or ``token``."""
        return Delivery(
            self.interaction.client,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            interaction=interaction,
            token=token,
            token_expires_at=self._token_expires_at(),
            placeholder_id=placeholder_id,
            placeholder_by_webhook=True,
            reply_to=self.source_message_id,
        )

    def _token_expires_at(self) -> float:
        return self.interaction.created_at.timestamp() + INTERACTION_TTL_S


class MessageOrigin(Origin):
    """A message in an image channel or a reaction on one of our results: answers go in the channel.

    Refusals posted in a channel are public, so one member can make the bot post only a few of them:
    ``replies`` (one throttle for the process) allows ``PUBLIC_REFUSALS_PER_MINUTE`` per member; the
    rest are logged and not posted.
    """

    replies = UserThrottle(PUBLIC_REFUSALS_PER_MINUTE, 60.0)
    source_message_id: int  # always a message here: the one replied to

    def __init__(
        self,
        client: discord.Client,
        *,
        channel_id: int,
        guild_id: int | None,
        user_id: int,
        source_message_id: int,
        age_restricted: bool = False,
        member: discord.Member | None = None,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.guild_id = guild_id
        self.user_id = user_id
        self.source_message_id = source_message_id
        self.age_restricted = age_restricted
        self.member = member  # who reacted or wrote, as the gateway gave it

    def moderates(self, job: JobRecord) -> bool:
        return scope.moderates(self.member, job)

    def _reference(self) -> discord.MessageReference:
        return discord.MessageReference(
            message_id=self.source_message_id,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            fail_if_not_exists=False,
        )

    async def refuse(self, text: str) -> None:
        if not self.replies.allow(self.user_id):
            log.info("refusal to user %s in channel %s not posted (throttled): %s", self.user_id, self.channel_id, text)
            return
        channel = self.client.get_partial_messageable(self.channel_id, guild_id=self.guild_id)
        try:
            await bounded(
                channel.send(
                    fit(f"<@{self.user_id}> {text}"),
                    reference=self._reference(),
                    allowed_mentions=NO_MENTIONS,
                    delete_after=REFUSAL_DELETE_AFTER_S,
                ),
                self.call_timeout,
                "a refusal",
            )
        except (discord.HTTPException, CallTimeout) as e:
            log.info("could not post a refusal in channel %s: %s", self.channel_id, e)

    async def acknowledge(self, content: str) -> Delivery:
        channel = self.client.get_partial_messageable(self.channel_id, guild_id=self.guild_id)
        with posting_in(self.channel_id):
            message = await bounded(
                channel.send(fit(content), reference=self._reference(), allowed_mentions=NO_MENTIONS),
                self.call_timeout,
                "the acknowledgement",
            )
        return Delivery(
            self.client,
            channel_id=self.channel_id,
            guild_id=self.guild_id,
            placeholder_id=message.id,
            placeholder_by_webhook=False,
            reply_to=self.source_message_id,
        )


R = TypeVar("R")


def refusals_answered(method: Callable[..., Awaitable[R | None]]) -> Callable[..., Awaitable[R | None]]:
    """A user-facing request method (``JobService``'s): a :class:`Refusal` raised inside becomes the user's
    (ephemeral) answer through the origin, its first argument, and the method returns None."""

    @functools.wraps(method)
    async def wrapper(self: Any, origin: Origin, *args: Any, **kwargs: Any) -> R | None:
        try:
            return await method(self, origin, *args, **kwargs)
        except Refusal as r:
            await origin.refuse(str(r))
            return None

    return wrapper
