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
import functools
import io
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from core.calls import (  # a bounded call and the errors a delivery raises: importers of core.delivery get them too
    CALL_TIMEOUT_S,
    NO_MENTIONS,
    CallTimeout,
    DeliveryError,
    bounded,
    forbidden_text,
    posting_in,
)
from core.echo import fit
from core.history import JobRecord
from core.uploads import fit_to_limit

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 20.0  # stop using an interaction token this long before Discord does
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's limit for a server without boosts, and for DMs
POST_ATTEMPTS = 2  # a channel post with a nonce is tried again once: Discord drops the repeat

class Delivery:
    """The message that shows one job: its queue position, progress, and finally its images.

    Every Discord call is bounded by ``call_timeout`` (see :func:`bounded`). A call past its bound
    goes on in the background, and no other edit of the message starts until it is over (up to a
    bound again): a status edit is then skipped (``show`` returns False), a result goes to the channel
    instead. Should a result edit of the interaction's message land after the result went to the
    channel, that message is turned into a link to the channel's copy: one result, shown once.
    """

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
        call_timeout: float = CALL_TIMEOUT_S,
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
        self.call_timeout = call_timeout
        self._clock = clock
        self._token_dead = False
        self._late: asyncio.Task[Any] | None = None  # an edit of the message that outlived its bound
        self._late_by_webhook = False  # whether that edit went through the interaction's token
        self._posted_instead: discord.Message | None = None  # the channel's copy, after a late result edit

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

    # ----------------------------------------------------------------- bounded calls

    def _keep_late(self, by_webhook: bool, task: asyncio.Task[Any]) -> None:
        self._late, self._late_by_webhook = task, by_webhook
        task.add_done_callback(lambda _task: self._point_to_copy())

    async def _settled(self) -> bool:
        """Whether no earlier edit of the message is still going on (waiting for one up to the bound)."""
        late = self._late  # _point_to_copy may clear self._late while we wait
        if late is None or late.done():
            return True
        await asyncio.wait({late}, timeout=self.call_timeout)  # waits; never cancels it
        return late.done()

    def _point_to_copy(self) -> None:
        """An edit (status or result) landed after the result went to the channel: make it a link to the copy."""
        task, copy = self._late, self._posted_instead
        if task is None or copy is None or not task.done() or task.cancelled() or task.exception() is not None:
            return
        self._late = None
        fields: dict[str, Any] = {"content": f"Posted here instead: {copy.jump_url}", "attachments": [], "view": None}
        if self._late_by_webhook:
            edit: Awaitable[Any] = self._edit_webhook(**fields)
        else:
            edit = task.result().edit(allowed_mentions=NO_MENTIONS, **fields)
        pointer = asyncio.ensure_future(bounded(edit, self.call_timeout, "the link to the channel's copy"))
        pointer.add_done_callback(lambda t: t.cancelled() or t.exception())  # logged in bounded; nothing to add

    # ----------------------------------------------------------------- operations

    async def show(self, content: str, preview: bytes | None = None) -> bool:
        """Replace the placeholder's text (queue position, progress), and its image with ``preview`` if given.

        Returns False when the edit did not go through in time (it may still land); the next state
        will try again. Raises discord.HTTPException. The result's own upload later replaces the preview.
        """
        content = fit(content)
        extra: dict[str, Any] = {}
        if preview is not None:
            extra["attachments"] = [discord.File(io.BytesIO(preview), filename="preview.png")]
        if not await self._settled():
            log.info("message of channel %s: an earlier edit is still in flight; status not shown", self.channel_id)
            return False
        try:
            if self._webhook_usable():
                try:
                    await bounded(
                        self._edit_webhook(content=content, **extra),
                        self.call_timeout,
                        "a status edit",
                        on_late=functools.partial(self._keep_late, True),
                    )
                except (discord.NotFound, discord.Forbidden):
                    self._token_dead = True
                    raise
            elif self.placeholder_id is not None and not self.placeholder_by_webhook:
                message = self._channel().get_partial_message(self.placeholder_id)
                await bounded(
                    message.edit(content=content, allowed_mentions=NO_MENTIONS, **extra),
                    self.call_timeout,
                    "a status edit",
                    on_late=functools.partial(self._keep_late, False),
                )
        except CallTimeout as e:
            log.info("channel %s: %s", self.channel_id, e)
            return False
        return True

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
        repeated within a few minutes (a retry, or a restart after a crash) gets the same message back,
        so a channel post that timed out or failed on Discord's side is tried once more.

        Files over the upload limit of the route used are shrunk first (see :meth:`upload_limit`).
        """
        content = fit(content)  # the last guard: over 2,000 characters Discord refuses the whole post
        fitted: dict[int, list[tuple[str, bytes]]] = {}

        async def attachments(limit: int) -> list[discord.File]:
            if limit not in fitted:
                fitted[limit] = await fit_files(files, limit)
            return [discord.File(io.BytesIO(data), filename=name) for name, data in fitted[limit]]

        view_arg: Any = view if view is not None else discord.utils.MISSING
        if self._webhook_usable():
            try:
                if not await self._settled():
                    raise CallTimeout("an earlier edit of the interaction's message is still in flight")
                return await bounded(
                    self._edit_webhook(
                        content=content, attachments=await attachments(self.upload_limit(webhook=True)), view=view_arg
                    ),
                    self.call_timeout,
                    "the result's edit",
                    on_late=functools.partial(self._keep_late, True),
                )
            except CallTimeout as e:
                log.info("channel %s: %s; posting in the channel", self.channel_id, e)
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
                if not await self._settled():
                    raise CallTimeout("an earlier edit of the placeholder is still in flight")
                placeholder = channel.get_partial_message(self.placeholder_id)
                fields = {"content": content, "attachments": await attachments(limit), "view": view_arg}
                return await bounded(
                    placeholder.edit(allowed_mentions=NO_MENTIONS, **fields),
                    self.call_timeout,
                    "the result's edit",
                    on_late=functools.partial(self._keep_late, False),
                )
            except CallTimeout as e:
                log.info("channel %s: %s; posting a new message", self.channel_id, e)
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
        attempts = POST_ATTEMPTS if nonce is not None else 1  # without a nonce a repeat could post twice
        late_posts: list[asyncio.Future[discord.Message]] = []
        for attempt in range(1, attempts + 1):
            try:
                with posting_in(self.channel_id):
                    uploads = await attachments(limit)
                    message = await bounded(
                        channel.send(content, files=uploads, view=view_arg, allowed_mentions=NO_MENTIONS, **options),
                        self.call_timeout,
                        "the result's post",
                        on_late=late_posts.append,
                    )
            except (CallTimeout, discord.DiscordServerError) as e:
                if attempt < attempts:
                    log.info("channel %s: %s; trying once more (same nonce)", self.channel_id, e)
                    continue
                if isinstance(e, CallTimeout):
                    error = DeliveryError(f"Discord did not take the images in time ({self.call_timeout:g} s).")
                else:
                    error = DeliveryError(f"Discord failed the upload ({e.status}).")
                error.late_posts = tuple(late_posts)  # an earlier attempt may still land
                raise error from e
            except discord.HTTPException as e:
                raise DeliveryError(f"Discord failed the upload ({e.status}).") from e
            self._posted_instead = message
            self._point_to_copy()  # a result edit that landed meanwhile
            return message
        raise AssertionError("unreachable: the last attempt returns or raises")

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
            await bounded(
                self._channel().get_partial_message(message_id).add_reaction(emoji), self.call_timeout, "a reaction"
            )
        except (discord.HTTPException, CallTimeout) as e:
            log.info("could not add %s to message %s: %s", emoji, message_id, e)

    async def tell(self, text: str) -> bool:
        """A private note to the user where one is possible (a live interaction); returns whether it was sent."""
        if self.interaction is None or not self.token_alive():
            return False
        try:
            await bounded(
                self.interaction.followup.send(fit(text), ephemeral=True, allowed_mentions=NO_MENTIONS),
                self.call_timeout,
                "a private note",
            )
        except (discord.HTTPException, CallTimeout) as e:
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
