"""A loopback fake Discord (REST + gateway) for end-to-end tests, and a launcher for the real bot.

See :mod:`tests.fakediscord.server` for the fake and :mod:`tests.fakediscord.botproc` for the launcher.
"""

from .botproc import BotProcess
from .records import (
    FakeError,
    Interaction,
    MessageSnapshot,
    RecordedCall,
    StoredAttachment,
    StoredMessage,
    Upload,
)
from .server import CommandUnavailable, FakeDiscord, Fault, RateLimit, WaitTimeout
from .world import FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser, World

__all__ = [
    "BotProcess",
    "CommandUnavailable",
    "FakeChannel",
    "FakeDiscord",
    "FakeError",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "Fault",
    "Interaction",
    "MessageSnapshot",
    "RateLimit",
    "RecordedCall",
    "StoredAttachment",
    "StoredMessage",
    "Upload",
    "WaitTimeout",
    "World",
]
