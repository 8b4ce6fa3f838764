"""Where a job's result goes: the one message that shows its state and then its images.

An origin (``core.origins``) acknowledges an accepted job with a :class:`Delivery`.

Delivery order for a result: edit the interaction's message while its token is valid
(15 minutes), else edit our own placeholder message in the channel, else post a new message
in the channel, replying to the message the job came from where there is one.

A file bigger than the upload limit of where it goes (the interaction's ``attachment_size_limit``,
else the guild's ``filesize_limit``, else 10 MiB) is sent as a WebP or JPEG that fits
(``core.uploads.fit_to_limit``) instead of failing the upload.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import discord

from core.history import JobRecord
from core.uploads import fit_to_limit

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
TOKEN_MARGIN_S = 20.0  # stop using an interaction token this long before Discord does
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's limit for a server without boosts, and for DMs


CHANNEL_EDITS_PER_WINDOW = 5  # Discord allows about 5 message edits per channel per 5 s
CHANNEL_WINDOW_S = 5.2
STATUS_RETRY_S = 0.5  # a status edit held back for a waiting result tries again after this long
RESULT_PACE_S = 30.0  # the longest a result waits for its channel's turn before it goes anyway


class ChannelPacer:
    """Keeps the bot's message edits and posts per channel under Discord's per-channel limit.

    Results take a turn (waiting for one, up to a bound); status edits (queue position, progress)
    go only while no result waits and the channel has room, else they wait and the newest state goes later.
    """

    def __init__(
        self, count: int = CHANNEL_EDITS_PER_WINDOW, per: float = CHANNEL_WINDOW_S, clock=time.monotonic
    ) -> None:
        self.count = count
        self.per = per
        self._clock = clock
        self._sent: dict[int, collections.deque[float]] = {}
        self._results_waiting: dict[int, int] = {}  # results waiting for their turn, per channel

    def delay(self, channel_id: int, *, reserve: int = 0) -> float:
        """Seconds until a call may go in ``channel_id`` leaving ``reserve`` slots free (0: now)."""
        now = self._clock()
        sent = self._sent.get(channel_id)
        if sent is None:
            return 0.0
        while sent and sent[0] <= now - self.per:
            sent.popleft()
        if not sent:
            del self._sent[channel_id]
            return 0.0
        allowed = max(1, self.count - reserve)
        if len(sent) < allowed:
            return 0.0
        return sent[len(sent) - allowed] + self.per - now

    def take(self, channel_id: int) -> None:
        self._sent.setdefault(channel_id, collections.deque()).append(self._clock())

    def status_gate(self, channel_id: int, *, crowded: bool = True) -> float:
        """For a status edit: 0 (and the slot is taken) when it may go now, else seconds to wait.

        While a result waits for its turn in the channel, status edits wait too: results come first.
        A job alone in its channel (``crowded`` False) is not held back: its own edits are already
        spaced by the progress interval.
        """
        if self._results_waiting.get(channel_id):
            return STATUS_RETRY_S
        wait = self.delay(channel_id) if crowded else 0.0
        if wait <= 0:
            self.take(channel_id)
        return wait

    async def turn(self, channel_id: int, *, timeout: float = RESULT_PACE_S) -> None:
        """Wait (at most ``timeout`` s) for a slot in ``channel_id``, then take it."""
        deadline = self._clock() + timeout
        self._results_waiting[channel_id] = self._results_waiting.get(channel_id, 0) + 1
        try:
            for _ in range(1000):
                wait, left = self.delay(channel_id), deadline - self._clock()
                if wait <= 0 or left <= 0:
                    break
                await asyncio.sleep(min(wait, left) + 0.01)
        finally:
            self._results_waiting[channel_id] -= 1
            if not self._results_waiting[channel_id]:
                del self._results_waiting[channel_id]
        self.take(channel_id)


class DeliveryError(Exception):
    """A result could not be posted anywhere; the message says why, for logs and the user."""


def forbidden_text(channel_id: int) -> str:
    return f"I may not post or attach files in <#{channel_id}> (missing Send Messages or Attach Files)."


class Delivery:
    """The message that shows one job: its queue position, progress, and finally its images."""

    def __init__(
        self,
        client: discord.Client,
        *,
        channel_id: int,
        guild_id: int | None,
        interaction: discord.Interaction | None = None,
        token: str | None = None,
        token_expires_at: float | None = None,
        placeholder_id: int | None = None,
        placeholder_by_webhook: bool = False,
        reply_to: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.guild_id = guild_id
        self.interaction = interaction
        self.token = token if token is not None else (interaction.token if interaction is not None else None)
        self.token_expires_at = token_expires_at
        self.placeholder_id = placeholder_id
        self.placeholder_by_webhook = placeholder_by_webhook
        self.reply_to = reply_to
        self._clock = clock
        self._token_dead = False

    @classmethod
    def for_job(cls, client: discord.Client, job: JobRecord) -> Delivery:
        """A delivery rebuilt from a stored job (after a restart): no live interaction, maybe a token."""
        return cls(
            client,
            channel_id=job.channel_id,
            guild_id=job.guild_id,
            token=job.interaction_token,
            token_expires_at=job.interaction_expires_at,
            placeholder_id=job.result_message_id,
            placeholder_by_webhook=job.interaction_token is not None,
            reply_to=job.source_message_id,
        )

    # ----------------------------------------------------------------- state

    def token_alive(self) -> bool:
        if self.token is None or self._token_dead:
            return False
        if self.token_expires_at is None:
            return self.interaction is not None
        return self._clock() < self.token_expires_at - TOKEN_MARGIN_S

    def _webhook_usable(self) -> bool:
        if not self.token_alive():
            return False
        # After a restart the token's own message is "@original" when its id was never recorded.
        return self.interaction is not None or (
            (self.placeholder_id is not None or self.placeholder_by_webhook) and self.client.application_id is not None
        )

    def _channel(self) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(self.channel_id, guild_id=self.guild_id)

    async def _edit_webhook(self, **fields: Any) -> discord.Message:
        if self.interaction is not None:
            return await self.interaction.edit_original_response(allowed_mentions=NO_MENTIONS, **fields)
        assert self.client.application_id is not None and self.token is not None
        webhook = discord.Webhook.partial(self.client.application_id, self.token, client=self.client)
        target: Any = self.placeholder_id if self.placeholder_id is not None else "@original"
        return await webhook.edit_message(target, allowed_mentions=NO_MENTIONS, **fields)

    # ----------------------------------------------------------------- operations

    async def show(self, content: str, preview: bytes | None = None) -> None:
        """Replace the placeholder's text (queue position, progress), and its image with ``preview`` if given.

        Raises discord.HTTPException. The result's own upload later replaces the preview.
        """
        extra: dict[str, Any] = {}
        if preview is not None:
            extra["attachments"] = [discord.File(io.BytesIO(preview), filename="preview.png")]
        if self._webhook_usable():
            try:
                await self._edit_webhook(content=content, **extra)
            except (discord.NotFound, discord.Forbidden):
                self._token_dead = True
                raise
            return
        if self.placeholder_id is not None and not self.placeholder_by_webhook:
            await (
                self._channel()
                .get_partial_message(self.placeholder_id)
                .edit(content=content, allowed_mentions=NO_MENTIONS, **extra)
            )

    async def post(
        self,
        content: str,
        files: Sequence[tuple[str, bytes]],
        view: discord.ui.View | None,
        *,
        nonce: str | None = None,
    ) -> discord.Message:
        """Post the result; returns the message it is in. Raises DeliveryError where nothing worked.

        A new channel message carries ``nonce`` with ``enforce_nonce`` (discord.py sets it): a post
        repeated within a few minutes (a retry, or a restart after a crash) gets the same message back.

        Files over the upload limit of the route used are shrunk first (see :meth:`upload_limit`).
        """
        fitted: dict[int, list[tuple[str, bytes]]] = {}

        async def attachments(limit: int) -> list[discord.File]:
            if limit not in fitted:
                fitted[limit] = await fit_files(files, limit)
            return [discord.File(io.BytesIO(data), filename=name) for name, data in fitted[limit]]

        view_arg: Any = view if view is not None else discord.utils.MISSING
        if self._webhook_usable():
            try:
                return await self._edit_webhook(
                    content=content, attachments=await attachments(self.upload_limit(webhook=True)), view=view_arg
                )
            except discord.HTTPException as e:
                # 404 Unknown Webhook (token expired) or Unknown Message (deleted), 401, 403, or Discord
                # failing after its retries: the channel is a separate route that may still work.
                log.info("interaction message unusable (%s %s); posting in the channel", e.status, e.code)
                if e.status < 500:
                    self._token_dead = True

        channel = self._channel()
        limit = self.upload_limit(webhook=False)
        if self.placeholder_id is not None and not self.placeholder_by_webhook:
            try:
                return await channel.get_partial_message(self.placeholder_id).edit(
                    content=content, attachments=await attachments(limit), view=view_arg, allowed_mentions=NO_MENTIONS
                )
            except discord.NotFound:
                log.info("placeholder message %s was deleted; posting a new one", self.placeholder_id)
            except discord.Forbidden as e:
                raise DeliveryError(forbidden_text(self.channel_id)) from e

        options: dict[str, Any] = {}  # only what is given: send's overloads take no None for these
        reference_id = self.reply_to if self.reply_to is not None else self.placeholder_id
        if reference_id is not None:
            options["reference"] = discord.MessageReference(
                message_id=reference_id, channel_id=self.channel_id, guild_id=self.guild_id, fail_if_not_exists=False
            )
        if nonce is not None:
            options["nonce"] = nonce
        try:
            return await channel.send(
                content, files=await attachments(limit), view=view_arg, allowed_mentions=NO_MENTIONS, **options
            )
        except discord.NotFound as e:
            raise DeliveryError(f"The channel <#{self.channel_id}> no longer exists.") from e
        except discord.Forbidden as e:
            raise DeliveryError(forbidden_text(self.channel_id)) from e
        except discord.HTTPException as e:
            raise DeliveryError(f"Discord failed the upload ({e.status}).") from e

    def upload_limit(self, *, webhook: bool) -> int:
        """The most bytes one file may have: the interaction's limit through its webhook, else the guild's."""
        if webhook and self.interaction is not None:
            limit = getattr(self.interaction, "filesize_limit", None)  # the payload's attachment_size_limit
            if isinstance(limit, int) and limit > 0:
                return limit
        guild = self.client.get_guild(self.guild_id) if self.client is not None and self.guild_id is not None else None
        limit = getattr(guild, "filesize_limit", None)
        if isinstance(limit, int) and limit > 0:
            return limit
        return DEFAULT_UPLOAD_LIMIT

    async def react(self, message_id: int, emoji: str) -> None:
        """Add our reaction to a message in this channel, so people see they can use it."""
        try:
            await self._channel().get_partial_message(message_id).add_reaction(emoji)
        except discord.HTTPException as e:
            log.info("could not add %s to message %s: %s", emoji, message_id, e)

    async def tell(self, text: str) -> bool:
        """A private note to the user where one is possible (a live interaction); returns whether it was sent."""
        if self.interaction is None or not self.token_alive():
            return False
        try:
            await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as e:
            log.info("could not tell the user: %s", e)
            return False
        return True


async def fit_files(files: Sequence[tuple[str, bytes]], limit: int) -> list[tuple[str, bytes]]:
    """``files`` with each one over ``limit`` bytes re-encoded smaller (``name.png`` -> ``name.webp``/``.jpg``).

    Raises DeliveryError for a file that cannot be made small enough.
    """
    out: list[tuple[str, bytes]] = []
    for name, data in files:
        if len(data) <= limit:
            out.append((name, data))
            continue
        try:
            smaller, ext = await asyncio.to_thread(fit_to_limit, data, limit)
        except (ValueError, OSError) as e:
            raise DeliveryError(f"{name} is too large to upload here ({len(data)} bytes; limit {limit}).") from e
        stem = name.rsplit(".", 1)[0] if "." in name else name
        log.info(
            "%s is %d bytes, over the upload limit of %d: sent as %s (%d bytes)",
            name,
            len(data),
            limit,
            ext,
            len(smaller),
        )
        out.append((f"{stem}.{ext}", smaller))
    return out
