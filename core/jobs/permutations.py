"""A prompt's ``{a, b}`` permutations: one planned job each, admitted one after the other.

Each is counted against the user's limits on its own (:meth:`Admission.admit`) and gets its own
message (the origin's acknowledgement: for a slash command the first answers the interaction and
the others are follow-ups; in an image channel each is a reply). Those the limits refuse are named
in one answer at the end, so the user knows which were not queued.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.history import GuildSettings, JobRecord
from core.jobs.admission import Admission
from core.jobs.rows import Plan
from core.limits import Refusal
from core.origins import Origin

MAX_SHOWN_PROMPT_CHARS = 80  # each refused combination is named by this much of its prompt


async def admit_each(
    admission: Admission, origin: Origin, planned: Sequence[tuple[GuildSettings, Plan]]
) -> JobRecord | None:
    """Admit every plan in order; returns the first admitted job. A single plan's refusal is raised as it is."""
    if len(planned) == 1:
        guild, plan = planned[0]
        return await admission.admit(origin, plan, guild)
    origin.expect_more()
    first: JobRecord | None = None
    refused: list[tuple[str, str]] = []
    for guild, plan in planned:
        try:
            job = await admission.admit(origin, plan, guild)
        except Refusal as r:
            refused.append((plan.request.prompt, str(r)))
            continue
        first = first if first is not None else job
    if refused:
        await origin.refuse(not_queued_text(refused, len(planned)))
    return first


def not_queued_text(refused: Sequence[tuple[str, str]], total: int) -> str:
    """What the user reads about the combinations that were refused: which, and why."""
    reasons = {reason for _, reason in refused}
    if len(refused) == total and len(reasons) == 1:
        return f"None of the {total} combinations was queued: {refused[0][1]}"
    verb = "was" if len(refused) == 1 else "were"
    lines = [f"{len(refused)} of the {total} combinations {verb} not queued:"]
    for prompt, reason in refused:
        shown = prompt if len(prompt) <= MAX_SHOWN_PROMPT_CHARS else prompt[: MAX_SHOWN_PROMPT_CHARS - 1] + "…"
        lines.append(f"- “{shown}”: {reason}")
    return "\n".join(lines)[:2000]
