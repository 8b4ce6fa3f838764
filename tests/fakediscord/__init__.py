"""A loopback fake Discord (REST + gateway) for end-to-end tests, and a launcher for the real bot.

See :mod:`tests.fakediscord.server` for the fake (its rooms are the modules beside it: ``state``, ``payloads``,
``messages``, ``routes``, ``driver``, ``faults``) and :mod:`tests.fakediscord.botproc` for the launcher.
"""

from .botproc import BotProcess
from .commands import CommandUnavailable
from .entities import FakeChannel, FakeGuild, FakeMember, FakeRole, FakeUser
from .faults import Fault, RateLimit
from .records import (
    FakeError,
    Interaction,
    MessageSnapshot,
    RecordedCall,
    StoredAttachment,
    StoredMessage,
    Upload,
)
from .server import FakeDiscord
from .state import WaitTimeout
from .world import World

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
