"""What the fake answers instead of the real thing: injected faults and Discord's per-channel rate limit."""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field

from .api import Reply
from .records import RecordedCall


@dataclass(eq=False)
class Fault:
    """An injected failure for the next ``remaining`` calls matching ``method`` and ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    remaining: int
    is_global: bool = False
    code: int = 0
    uploads_only: bool = False  # only requests that upload at least one file (a result, not a status edit)
    hits: list[RecordedCall] = field(default_factory=list)

    def reply(self) -> Reply:
        """The answer: a 429 the way Discord sends it (body, Retry-After, Via), or a plain error."""
        if self.status == 429:
            headers = {
                "Retry-After": str(max(1, math.ceil(self.retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
                "X-RateLimit-Scope": "global" if self.is_global else "user",
                "Via": "1.1 google",
            }
            if self.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": self.is_global}
            return Reply(429, body, headers)
        return Reply(self.status, {"message": f"{self.status}: injected fault", "code": self.code})


class Faults:
    """The pending faults, first added first used (see :meth:`tests.fakediscord.FakeDiscord.fail_next`)."""

    def __init__(self) -> None:
        self.pending: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Arm ``fault`` for its next ``remaining`` matching calls."""
        self.pending.append(fault)
        return fault

    def take(self, method: str, path: str, *, uploads: bool = False) -> Fault | None:
        """The fault that answers this call (one use of it spent), or None."""
        for fault in self.pending:
            if fault.uploads_only and not uploads:
                continue
            if fault.remaining > 0 and fault.method == method and fault.pattern.search(path):
                fault.remaining -= 1
                return fault
        return None


@dataclass(frozen=True)
class RateLimit:
    """Discord's per-channel limit on message creates and on message edits: ``count`` per ``per`` seconds.

    Creates (``POST /channels/{c}/messages``, interaction follow-ups) and edits (``PATCH`` of a channel
    message or of an interaction's message) have a bucket each per channel; an interaction's webhook
    messages count against the channel it was used in. Over the limit the fake answers 429 as Discord
    does: ``X-RateLimit-*`` headers (with the bucket), ``Retry-After``, ``retry_after`` in the body and
    ``Via`` (without it discord.py takes a 429 for a Cloudflare ban). Successful calls carry the headers too.
    """

    count: int = 5
    per: float = 5.0


@dataclass
class _Bucket:
    started: float
    used: int = 0


# Route templates under the per-channel limit, and which of its two buckets each uses.
_LIMITED_ROUTES: dict[str, str] = {
    "/channels/{channel_id}/messages": "create",
    "/webhooks/{app_id}/{token}": "create",
    "/channels/{channel_id}/messages/{message_id}": "edit",
    "/webhooks/{app_id}/{token}/messages/{message_id}": "edit",
}


class ChannelLimiter:
    """The buckets of the per-channel :class:`RateLimit`: one for creates and one for edits per channel."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check(
        self, limit: RateLimit | None, template: str, channel_id: str | None
    ) -> tuple[Reply | None, dict[str, str]]:
        """(a 429 to answer instead, or None; the rate-limit headers of a call that goes through)."""
        kind = _LIMITED_ROUTES.get(template)
        if limit is None or kind is None or channel_id is None:
            return None, {}
        now = time.monotonic()
        bucket = self._buckets.get((kind, channel_id))
        if bucket is None or now >= bucket.started + limit.per:
            bucket = self._buckets[(kind, channel_id)] = _Bucket(now)
        reset_after = max(0.0, bucket.started + limit.per - now)
        headers = {
            "X-RateLimit-Limit": str(limit.count),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(f"{kind}:{template}".encode()).hexdigest()[:16],
        }
        if bucket.used >= limit.count:
            headers.update({
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Scope": "user",
                "Retry-After": str(max(1, math.ceil(reset_after))),
                "Via": "1.1 google",
            })
            body = {"message": "You are being rate limited.", "retry_after": round(reset_after, 3), "global": False}
            return Reply(429, body, headers), {}
        bucket.used += 1
        headers["X-RateLimit-Remaining"] = str(limit.count - bucket.used)
        return None, headers
