"""The job service: the one path every image request takes (``bot.jobs``, :class:`JobService`).

check (``checks``) -> plan (``plans``, ``preferences``, ``rows``) -> admit (``admission``: limits, the
row before the engine sees the job, the acknowledgement) -> run (``runner``: submit, follow, cancel,
restart, shutdown) -> outcome (``outcome``: post, record, 🔁, W&B, DM). ``images`` keeps and prunes
the images jobs start from. What servers and members set has rooms of its own, which the cogs call:
``guilds`` (each server's settings, cached), ``styles`` (style presets), ``member_prefs`` (/prefer).
"""

from core.jobs.service import JobService

__all__ = ["JobService"]
