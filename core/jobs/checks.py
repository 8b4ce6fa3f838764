"""The "check" step of every command: the server, the prompt, the job a button names, the user's defaults.

Reads the store (rows, preferences, style presets), the server settings and the stored images; writes nothing.
Everything refused here is a :class:`~core.limits.Refusal` with the sentence the user reads.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from core.history import GuildSettings, HistoryStore, JobRecord
from core.inputs import InputStore
from core.jobs.guilds import GuildCache
from core.jobs.images import StoredImages
from core.jobs.preferences import Applied, apply_prefs
from core.jobs.rows import MAX_INIT_DEPTH, RebuildError, Request, init_depth, rebuild_request, status_word
from core.jobs.styles import StyleBook
from core.limits import Refusal, check_prompt
from core.origins import Origin
from engine.api import DraftRequest

log = logging.getLogger(__name__)

MAX_JOB_ID = 2**63 - 1


class Checks:
    """What a command must pass before it is planned."""

    def __init__(
        self, store: HistoryStore, guilds: GuildCache, images: StoredImages, styles: StyleBook | None = None
    ) -> None:
        self._store = store
        self._guilds = guilds
        self._images = images
        self._styles = styles if styles is not None else StyleBook(store)

    @property
    def _inputs(self) -> InputStore | None:
        return self._images.inputs

    async def guild_of(self, origin: Origin) -> GuildSettings:
        if origin.guild_id is None:
            raise Refusal("I make images in servers only, not in direct messages.")
        return await self._guilds.get(origin.guild_id)

    @staticmethod
    def finals_allowed(guild: GuildSettings, origin: Origin) -> None:
        if not guild.finals_outside_nsfw and not origin.age_restricted:
            raise Refusal("On this server, finals are made in age-restricted channels only.")

    @staticmethod
    def prompt_allowed(prompt: object, guild: GuildSettings, origin: Origin) -> str:
        """The prompt, checked (length, blocked words outside age-restricted channels)."""
        return check_prompt(prompt, blocked_words=guild.blocked_words, age_restricted=origin.age_restricted)

    async def new_prompt(
        self,
        origin: Origin,
        prompt: object,
        fill: Collection[str],
        *,
        finals: bool = False,
        negative_prompt: object = None,
        aspect: object = None,
        model: object = None,
        style: object = None,
    ) -> tuple[GuildSettings, Applied]:
        """The opening of /imagine, /final and /edit: the server, the prompt, then the defaults in ``fill``.

        ``style`` names one of the server's style presets (``core.styles``), applied instead of the
        member's own style suffix.
        """
        guild = await self.guild_of(origin)
        if finals:
            self.finals_allowed(guild, origin)
        text = self.prompt_allowed(prompt, guild, origin)
        preset = await self._styles.resolve(guild.guild_id, style) if style is not None else None
        asked = apply_prefs(
            await self._store.user_prefs(origin.user_id),
            fill,
            prompt=text,
            negative_prompt=negative_prompt,
            aspect=aspect,
            model=model,
            blocked_words=guild.blocked_words,
            age_restricted=origin.age_restricted,
            style=preset,
        )
        return guild, asked

    async def preferred_model(self, origin: Origin) -> Applied:
        """The clicker's preferred final model (an upscale's only default), as applied."""
        return apply_prefs(await self._store.user_prefs(origin.user_id), ("final_model",))

    async def get_job(self, job_id: int) -> JobRecord:
        job = await self._store.get_job(job_id) if 1 <= job_id <= MAX_JOB_ID else None
        if job is None:
            raise Refusal(f"There is no job #{job_id}.")
        return job

    async def job_in_guild(self, origin: Origin, job_id: int) -> JobRecord:
        job = await self.get_job(job_id)
        if job.guild_id != origin.guild_id:
            raise Refusal(f"Job #{job.id} was made in another server.")
        return job

    async def again(self, origin: Origin, guild: GuildSettings, job_id: int, *, own: bool = False) -> JobRecord:
        """A job of this server that may be made again here (🔁, /show): finals only where finals are allowed.

        With ``own``, only its author or a moderator may (a re-post shows the same images again); without,
        others may too unless it started from its author's upload (:meth:`may_remake`).
        """
        job = await self.job_in_guild(origin, job_id)
        if own and job.user_id != origin.user_id and not origin.moderates(job):
            raise Refusal(
                f"Job #{job.id} belongs to someone else; only moderators can re-post other members' jobs."
            )
        await self.may_remake(origin, job)
        if job.kind == "final":
            self.finals_allowed(guild, origin)
        self.prompt_allowed(job.prompt, guild, origin)
        return job

    async def may_remake(self, origin: Origin, job: JobRecord) -> None:
        """Refuse another member's job that started from their upload unless ``origin`` moderates it.

        🔁, Remix, U and V make such a job again from the member's stored upload (start image, mask,
        image reference), which was theirs to share: only its author and moderators may reuse it.
        """
        if job.user_id == origin.user_id or origin.moderates(job):
            return
        if await self._uses_upload(job):
            log.info("job %s reuse by user %s refused: it starts from its author's upload", job.id, origin.user_id)
            raise Refusal(
                f"Job #{job.id} started from an image its author uploaded; only they and moderators can make it "
                "again."
            )

    async def _uses_upload(self, job: JobRecord) -> bool:
        """Whether ``job``, or a draft it starts from, names a member's upload (not a bot result's copy)."""
        item: JobRecord | None = job
        for _ in range(MAX_INIT_DEPTH + 2):
            if item is None:
                return False
            params = item.params
            if params.reference_image or (params.init_image and params.outpaint is None and params.upscale is None):
                return True
            if item.parent_index is None or params.init_image or item.parent_id is None:
                return False
            item = await self._store.get_job(item.parent_id)
        return False

    async def remixable(self, origin: Origin, guild: GuildSettings, job_id: int) -> JobRecord:
        """A job of this server whose prompts may be edited into a new job here (Remix)."""
        job = await self.job_in_guild(origin, job_id)
        await self.may_remake(origin, job)
        if job.kind == "final":
            self.finals_allowed(guild, origin)
        return job

    async def rebuild(self, job: JobRecord) -> Request:
        try:
            return await rebuild_request(self._store, job, self._inputs)
        except RebuildError as e:
            log.warning("cannot rebuild job %s: %s", job.id, e)
            raise Refusal(
                f"Job #{job.id} can't be made again: the image or job it started from is no longer stored."
            ) from e

    async def parent_draft(self, origin: Origin, job_id: int, index: int) -> tuple[JobRecord, DraftRequest]:
        """A finished draft job of this server with an image ``index``, and its request (U and V)."""
        parent = await self.job_in_guild(origin, job_id)
        await self.may_remake(origin, parent)
        if parent.kind != "draft":
            raise Refusal(f"Job #{parent.id} is a final; U and V buttons work on drafts.")
        _require_done(parent, "it has no images to start from")
        if not (0 <= index < parent.count):
            raise Refusal(f"Job #{parent.id} has {parent.count} images; there is no image {index + 1}.")
        request = await self.rebuild(parent)
        assert isinstance(request, DraftRequest)
        if init_depth(request) >= MAX_INIT_DEPTH:
            raise Refusal(
                f"This image is {MAX_INIT_DEPTH} variations deep, the most I keep track of. Start again with "
                f"/imagine and seed {request.seeds[index]}."
            )
        return parent, request

    async def final_source(
        self, origin: Origin, guild: GuildSettings, job_id: int, buttons: str, verb: str
    ) -> tuple[JobRecord, bytes]:
        """A finished final of this guild that a new final may start from, and its stored image."""
        self.finals_allowed(guild, origin)
        parent = await self.job_in_guild(origin, job_id)
        if parent.kind != "final":
            raise Refusal(f"Job #{parent.id} is a set of drafts; {buttons} work on finals (press U first).")
        _require_done(parent, f"it has no image to {verb}")
        self.prompt_allowed(parent.prompt, guild, origin)
        source = await self._images.result(parent.id)
        if source is None:
            raise Refusal(f"The image of job #{parent.id} is no longer stored, so I can't {verb} it.")
        return parent, source


def _require_done(parent: JobRecord, nothing: str) -> None:
    """Refuse to start from ``parent`` unless it finished well (``nothing``: what a failed one lacks)."""
    if parent.status != "done":
        if parent.finished:
            raise Refusal(f"Job #{parent.id} {status_word(parent)}; {nothing}.")
        raise Refusal(f"Job #{parent.id} isn't finished yet.")
