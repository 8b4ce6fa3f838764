"""What the fake Discord remembers: REST calls, messages (with attachment bytes), interactions, errors.

Tests read these records to check what the bot did. Interaction records also wait: ``await
interaction.wait_callback()`` returns once the bot answered the interaction.
"""

from __future__ import annotations

import io
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .entities import FakeChannel, FakeGuild, FakeUser

if TYPE_CHECKING:
    from PIL import Image

    from .server import FakeDiscord

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_COMPONENTS_V2 = 1 << 15
# The flags a bot may set when it creates a message (Discord drops the others); interactions add FLAG_EPHEMERAL.
FLAGS_ON_CREATE = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2

# Interaction types.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Interaction callback types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

# Message types.
MSG_DEFAULT = 0
MSG_REPLY = 19
MSG_CHAT_INPUT_COMMAND = 20

# Application command option types.
OPT_SUB_COMMAND = 1
OPT_SUB_COMMAND_GROUP = 2
OPT_STRING = 3
OPT_INTEGER = 4
OPT_BOOLEAN = 5
OPT_USER = 6
OPT_CHANNEL = 7
OPT_ROLE = 8
OPT_MENTIONABLE = 9
OPT_NUMBER = 10
OPT_ATTACHMENT = 11


@dataclass(frozen=True)
class Upload:
    """A file a user uploads (``say(..., attachments=[Upload(...)])``, attachment options of ``slash``)."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request: ``index`` is ``n`` of ``files[n]``."""

    index: int
    field: str
    filename: str
    data: bytes
    content_type: str | None


@dataclass(eq=False)
class StoredAttachment:
    """An attachment with its bytes; ``url`` is served by the fake (GET answers the bytes)."""

    id: str
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    description: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)

    def image(self) -> Image.Image:
        """The attachment decoded with Pillow (fully loaded)."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image

    def to_json(self) -> dict[str, Any]:
        """The attachment object (width/height for images Pillow can read)."""
        content_type = self.content_type or mimetypes.guess_type(self.filename)[0]
        data: dict[str, Any] = {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "flags": 0,
        }
        if content_type:
            data["content_type"] = content_type
        if self.description is not None:
            data["description"] = self.description
        if self.ephemeral:
            data["ephemeral"] = True
        if content_type and content_type.startswith("image/"):
            try:
                width, height = self.image().size
            except Exception:  # not an image after all: Discord leaves the size out too
                pass
            else:
                data["width"], data["height"] = width, height
        return data


@dataclass(frozen=True)
class MessageSnapshot:
    """A message's state before one edit (kept in ``StoredMessage.history``)."""

    at: float
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachment_names: tuple[str, ...]
    flags: int


@dataclass(eq=False)
class StoredMessage:
    """A message as the fake holds it: current state, edit history, deletion, reactions."""

    id: str
    channel_id: str
    guild_id: str | None
    author: FakeUser
    created_at: float
    timestamp: str
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    message_reference: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] | None = None
    mention_ids: list[str] = field(default_factory=list)
    mention_everyone: bool = False
    nonce: str | None = None
    webhook_id: str | None = None
    application_id: str | None = None
    interaction_id: str | None = None
    interaction_metadata: dict[str, Any] | None = None
    edited_timestamp: str | None = None
    edited_at: float | None = None
    deleted: bool = False
    deleted_at: float | None = None
    history: list[MessageSnapshot] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ephemeral(self) -> bool:
        """Whether only the interaction's user sees it (flag 64)."""
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Whether it is still a deferred "thinking..." message (flag 128)."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def edit_count(self) -> int:
        """How many times it was edited."""
        return len(self.history)

    @property
    def reply_to(self) -> str | None:
        """The id of the message it replies to, if any."""
        return None if self.message_reference is None else self.message_reference.get("message_id")

    def images(self) -> list[Image.Image]:
        """Every attachment decoded with Pillow."""
        return [attachment.image() for attachment in self.attachments]

    def custom_ids(self) -> list[str]:
        """The custom ids of all its interactive components, in order."""
        return [component["custom_id"] for component in iter_components(self.components) if "custom_id" in component]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        """The component with this custom id, or None."""
        for component in iter_components(self.components):
            if component.get("custom_id") == custom_id:
                return component
        return None

    def snapshot(self, at: float) -> MessageSnapshot:
        """Its current state, before an edit."""
        return MessageSnapshot(
            at=at,
            content=self.content,
            embeds=list(self.embeds),
            components=list(self.components),
            attachment_names=tuple(attachment.filename for attachment in self.attachments),
            flags=self.flags,
        )


def iter_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All components in a tree (action rows, sections, containers), depth first."""
    found: list[dict[str, Any]] = []
    for component in components:
        found.append(component)
        found.extend(iter_components(component.get("components") or []))
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            found.extend(iter_components([accessory]))
    return found


@dataclass(eq=False)
class RecordedCall:
    """One REST call the bot made, with what the fake answered."""

    at: float
    method: str
    path: str
    route: str | None
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    status: int = 0
    response: Any = None
    authorized: bool = False
    fault: bool = False
    rate_limited: bool = False  # answered 429 by the fake's per-channel limit (FakeDiscord.channel_rate_limit)

    def __repr__(self) -> str:
        return f"<RecordedCall {self.method} {self.path} -> {self.status}{' (fault)' if self.fault else ''}>"


@dataclass(frozen=True)
class FakeError:
    """Something the bot did that real Discord would reject; tests assert there are none.

    ``kind`` is one of ``unknown_route``, ``unauthorized``, ``invalid_body``, ``already_acknowledged``,
    ``interaction_timeout``, ``unknown_interaction``, ``unacknowledged_interaction``, ``gateway_protocol``,
    ``openapi`` (against Discord's published API description), ``fake_crash``.
    """

    kind: str
    message: str
    method: str | None = None
    path: str | None = None


@dataclass(eq=False)
class Interaction:
    """An interaction the test injected, and everything the bot did with it."""

    fake: FakeDiscord = field(repr=False)
    id: str
    token: str
    type: int
    name: str
    data: dict[str, Any]
    user: FakeUser
    channel: FakeChannel
    guild: FakeGuild | None
    created_at: float
    source_message_id: str | None = None
    parent: Interaction | None = field(default=None, repr=False)
    expired: bool = False
    callback_at: float | None = None
    callback_type: int | None = None
    callback_data: dict[str, Any] | None = None
    original_message_id: str | None = None
    followup_ids: list[str] = field(default_factory=list)
    first_followup_edited_original: bool = False

    @property
    def callback_delay(self) -> float | None:
        """Seconds between the injection and the bot's callback (None before the callback)."""
        return None if self.callback_at is None else self.callback_at - self.created_at

    @property
    def original(self) -> StoredMessage | None:
        """The original response (for a deferred update: the message the component is on)."""
        return None if self.original_message_id is None else self.fake.message(self.original_message_id)

    @property
    def followups(self) -> list[StoredMessage]:
        """Follow-up messages (a first follow-up after a type-5 defer edits the original instead)."""
        return [self.fake.message(message_id) for message_id in self.followup_ids]

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9), or None."""
        return self.callback_data if self.callback_type == MODAL else None

    def messages(self) -> list[StoredMessage]:
        """What the user sees from this interaction: the original (once not loading) and follow-ups, not deleted."""
        found = []
        original = self.original
        if original is not None and not original.loading and not original.deleted:
            if self.callback_type in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE):
                found.append(original)
            elif self.callback_at is not None and original.edited_at is not None:
                if original.edited_at >= self.callback_at:  # a deferred update, then an edit
                    found.append(original)
        found.extend(message for message in self.followups if not message.deleted)
        return found

    async def wait_callback(self, timeout: float = 5.0) -> int:
        """The callback type, once the bot answered the interaction."""
        await self.fake.wait_for(lambda: self.callback_type is not None, timeout, f"a callback for {self.name!r}")
        assert self.callback_type is not None
        return self.callback_type

    async def wait_original(
        self, predicate: Callable[[StoredMessage], bool] | None = None, timeout: float = 10.0
    ) -> StoredMessage:
        """The original response once it is no longer loading (and ``predicate`` holds)."""

        def ready() -> StoredMessage | None:
            original = self.original
            if original is None or original.loading:
                return None
            if predicate is not None and not predicate(original):
                return None
            return original

        return await self.fake.wait_for(ready, timeout, f"the original response to {self.name!r}")

    async def wait_followups(self, count: int = 1, timeout: float = 10.0) -> list[StoredMessage]:
        """The first ``count`` follow-up messages, once that many exist."""
        await self.fake.wait_for(
            lambda: len(self.followup_ids) >= count, timeout, f"{count} follow-up(s) to {self.name!r}"
        )
        return self.followups[:count]

    async def wait_messages(
        self, predicate: Callable[[list[StoredMessage]], bool], timeout: float = 10.0
    ) -> list[StoredMessage]:
        """The visible messages (see :meth:`messages`) once ``predicate`` holds for them."""

        def ready() -> list[StoredMessage] | None:
            messages = self.messages()
            return messages if predicate(messages) else None

        return await self.fake.wait_for(ready, timeout, f"messages for {self.name!r}")
