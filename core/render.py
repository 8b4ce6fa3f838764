"""The text of what the bot posts about a job: prompt, seed, model, and its state while it waits.

User text is shown escaped (markdown and mentions) on one line; everything is also posted with
``AllowedMentions.none()``, so even a mention that slips through pings nobody.
"""

from __future__ import annotations

import re

from core.echo import MESSAGE_LIMIT, escape, shown  # noqa: F401 - callers name them render.escape, render.shown
from core.history import JobMode, JobParams, JobRecord

PROMPT_SHOWN_CHARS = 1500  # leaves room for the lines below the prompt
DRAFT_EMOJI = "🎨"
OUTPAINT_WORDS = {
    "zoom15": "Zoomed out 1.5x",
    "zoom2": "Zoomed out 2x",
    "pan_left": "Panned ⬅️",
    "pan_right": "Panned ➡️",
    "pan_up": "Panned ⬆️",
    "pan_down": "Panned ⬇️",
}


VARY_WORDS = {"subtle": "Subtle variation", "strong": "Strong variation"}


# What only the owner should read: tracebacks, exception class names, CUDA and driver errors,
# OS error numbers, file paths (POSIX and Windows), source files, memory addresses.
_INTERNAL_DETAIL = re.compile(
    r"Traceback|\bFile \"|\b[A-Z]\w*(?:Error|Exception|Interrupt)\b|(?i:\bcuda\b|\bcudnn\b|\bcublas\b|\bnccl\b)"
    r"|\[Errno \d+\]|\.py\b|0x[0-9a-fA-F]{6,}|(?:^|[\s'\"(=:])(?:/[\w.\-]+){2,}|\b[A-Za-z]:\\"
)


def internal_detail(text: str) -> bool:
    """Whether ``text`` carries internal detail (paths, CUDA errors, exception names) that users must not see."""
    return _INTERNAL_DETAIL.search(text) is not None


def public_state(state: str, job_id: int) -> str:
    """``state`` as users may see it: a plain sentence instead, when it carries internal detail.

    The detail is not lost: the job service logs it and stores it in the job's row.
    """
    if not internal_detail(state):
        return state
    return f"⚠️ Something went wrong on my side while making job #{job_id}; it is logged. Try again in a moment."


def header_for(prompt: str, user_id: int) -> str:
    return f"**{shown(prompt, PROMPT_SHOWN_CHARS)}** — <@{user_id}>"


def header(job: JobRecord) -> str:
    return header_for(job.prompt, job.user_id)


def describe(job: JobRecord, *, steps: int | None = None) -> str:
    """One line: what this job is, its seed, model and size."""
    size = f"{job.width}×{job.height}"
    if job.kind == "draft":
        if job.mode == JobMode.IMG2IMG:
            what = "Drafts from your image"
        elif job.mode == JobMode.VARIATION and job.parent_index is not None:
            what = f"Variations of job #{job.parent_id} image {job.parent_index + 1}"
        elif job.mode == JobMode.REROLL:
            what = "Drafts (reroll)"
        elif job.mode == JobMode.REMIX and job.params.remix_of is not None:
            what = f"Drafts (remix of job #{job.params.remix_of})"
        else:
            what = "Drafts"
        return f"{what} · seed `{job.seed}` · {job.model} · {size} · job #{job.id}"
    if job.params.upscale is not None:
        what = f"Upscaled 2x ({job.params.upscale})"
        if job.mode == JobMode.UPSCALE_2X and job.parent_id is not None:
            what = f"{what} from job #{job.parent_id}"
    elif job.mode == JobMode.REMIX and job.params.remix_of is not None:
        what = f"Remix of job #{job.params.remix_of}"
    elif job.parent_index is not None:
        what = f"Final of job #{job.parent_id} image {job.parent_index + 1}"
    elif job.mode == JobMode.OUTPAINT and job.parent_id is not None:
        how = OUTPAINT_WORDS.get(job.params.outpaint or "", "Extended")
        what = f"{how} from job #{job.parent_id}"
    elif job.mode == JobMode.VARY and job.parent_id is not None:
        how = VARY_WORDS.get(job.params.vary or "", "Variation")
        what = f"{how} of job #{job.parent_id}"
    elif job.mode == JobMode.INPAINT:
        what = "Edit of your image"
    else:
        what = "Final"
    shown_steps = steps if steps is not None else job.steps
    step_text = f" · {shown_steps} steps" if shown_steps else ""  # none: an upscale (subtle) redraws nothing
    return f"{what} · seed `{job.seed}` · {job.model}{step_text} · {size} · job #{job.id}"


def addons_text(params: JobParams) -> str | None:
    """One line naming the job's add-ons ("LoRA tiny-ink 0.8 · Reference (style) 0.5"), or None without any."""
    parts = [f"LoRA {shown(name, 60)} {weight:g}" for name, weight in params.loras]
    if params.reference_image:
        weight = params.reference_weight if params.reference_weight is not None else 0.5
        parts.append(f"Reference ({params.reference_mode or 'full'}) {weight:g}")
    return " · ".join(parts) or None


def result_text(job: JobRecord, *, steps: int | None = None, note: str | None = None) -> str:
    lines = [header(job), describe(job, steps=steps)]
    if (addons := addons_text(job.params)) is not None:
        lines.append(addons)
    if job.negative_prompt:
        lines.append(f"Without: {shown(job.negative_prompt, 200)}")
    if job.params.style:
        lines.append(f"Style: {shown(job.params.style, 50)}")
    if note:
        lines.append(note)
    return "\n".join(lines)[:MESSAGE_LIMIT]


def status_text(job: JobRecord, state: str) -> str:
    return f"{header(job)}\n{describe(job)}\n{state}"[:MESSAGE_LIMIT]


def eta_text(seconds: float) -> str:
    if seconds < 1:
        return "in a moment"
    if seconds < 90:
        return f"about {round(seconds)} s"
    return f"about {round(seconds / 60)} min"


def queued_state(position: int | None, eta_s: float | None) -> str:
    if position is None:
        return "⏳ Queued."
    where = "next in line" if position <= 1 else f"position {position} in the queue"
    if eta_s is None:
        return f"⏳ Queued: {where}."
    return f"⏳ Queued: {where}, done {eta_text(eta_s)}."


def running_state(job: JobRecord) -> str:
    return f"{DRAFT_EMOJI} Drawing…" if job.kind == "draft" else f"{DRAFT_EMOJI} Starting…"


def progress_state(step: int, total: int) -> str:
    return f"{DRAFT_EMOJI} step {step}/{total}"


def direct_text(job: JobRecord, *, steps: int | None = None, link: str | None = None) -> str:
    """A result's parameters for a DM (✉️, or /prefer dm): prompt, seed, model, steps, size, where it is."""
    lines = [f"**{shown(job.prompt, PROMPT_SHOWN_CHARS)}**", describe(job, steps=steps)]
    shown_steps = steps if steps is not None else job.steps
    if job.kind == "draft" and shown_steps is not None:
        lines.append(f"Steps: {shown_steps} · seeds `{job.seed}`–`{job.seed + job.count - 1}`")
    if job.negative_prompt:
        lines.append(f"Without: {shown(job.negative_prompt, 200)}")
    if link:
        lines.append(link)
    return "\n".join(lines)[:MESSAGE_LIMIT]


