"""``JobService``: the one door the cogs use (``bot.jobs``); every command reads check, plan, admit.

The rooms behind it (each module says what it may touch):

- :mod:`core.jobs.checks`: the server, the prompt, the job a button names, the user's defaults;
- :mod:`core.jobs.plans`: pure builders of the request and the new row (with ``rows`` and ``preferences``);
- :mod:`core.jobs.admission`: limits, the row, the acknowledgement, then :mod:`core.jobs.runner`,
  which submits, follows, cancels, restarts and shuts down; :mod:`core.jobs.outcome` posts and records.

What servers and members set is not a job: the cogs change it in its own rooms, ``bot.jobs.guilds``
(:class:`~core.jobs.guilds.GuildCache`: settings, limits, image channels), ``bot.jobs.styles`` and
``bot.jobs.prefs`` (:class:`~core.jobs.member_prefs.MemberPrefs`: /prefer).

On start, jobs left waiting or running are submitted again and delivered to their channel; on shutdown the
engine gets a bounded time to finish its job and the rest stays queued for the next start. The engine is any
``engine.api.ImageEngine`` (in-process or a Ray Serve cluster); ``bot.py`` builds it and hands it in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import discord

from core import canvas
from core.controls import Controls
from core.delivery import Delivery
from core.direct import send_direct
from core.echo import quoted
from core.history import HistoryStore, JobRecord
from core.inputs import InputStore
from core.jobs import addons as addon_plans
from core.jobs import plans
from core.jobs.addons import Addons
from core.jobs.admission import Admission
from core.jobs.checks import Checks
from core.jobs.craft import read_prompt
from core.jobs.describe import DescribeJobs
from core.jobs.guilds import GuildCache
from core.jobs.images import StoredImages
from core.jobs.member_prefs import MemberPrefs
from core.jobs.outcome import DirectMessage, ResultPoster
from core.jobs.permutations import admit_each
from core.jobs.preferences import MODEL, NEGATIVE, STYLE
from core.jobs.prompting import Prompting
from core.jobs.rows import Plan, status_word
from core.jobs.runner import Runner
from core.jobs.styles import StyleBook
from core.limits import Refusal, check_negative_prompt
from core.origins import Origin, refusals_answered
from core.pacing import ChannelPacer
from core.runlog import RunLog
from core.safety import ImageSafety
from core.settings import BotSettings
from core.upload_gate import UploadGate
from engine.api import ImageEngine, RequestError

log = logging.getLogger(__name__)

ACCEPT_GRACE_S = 10.0  # on shutdown, time for requests already acknowledged to be stored
_SAFETY = ImageSafety()  # one detector for the process, loaded the first time a server uses it

class JobService:
    """Accepts, runs and delivers jobs; reached by the cogs as ``bot.jobs``."""

    def __init__(
        self,
        *,
        client: discord.Client,
        store: HistoryStore,
        engine: ImageEngine,
        settings: BotSettings,
        controls: Controls,
        clock: Callable[[], float] = time.time,
        delivery_for_job: Callable[[discord.Client, JobRecord], Delivery] = Delivery.for_job,
        inputs: InputStore | None = None,
        direct_message: DirectMessage = send_direct,
        run_log: RunLog | None = None,
        pacer: ChannelPacer | None = None,
        pace_channels: bool = True,
    ) -> None:
        self.store = store
        self.engine = engine
        # Keeps edits and posts per channel under Discord's limit; every job in a channel shares it.
        pacer = pacer if pacer is not None or not pace_channels else ChannelPacer()
        # What servers and members set, outside any job: /settings (through ``guilds`` and ``styles``), /prefer.
        self.guilds = GuildCache(store)
        self.prefs = MemberPrefs(store, engine)
        # Start images, masks and finals' images on disk (None: image features refuse politely).
        self.images = StoredImages(inputs, store, settings, clock)
        self.styles = StyleBook(store)  # the servers' style presets (/settings style, /imagine style:)
        self.checks = Checks(store, self.guilds, self.images, self.styles)
        self.prompting = Prompting(self.checks, engine, lambda: self._settings)
        self.outcome = ResultPoster(
            client=client,
            store=store,
            guilds=self.guilds,
            images=self.images,
            run_log=run_log if run_log is not None else RunLog(),
            direct_message=direct_message,
            pacer=pacer,
            safety=_SAFETY,
            controls=controls,
            upscaler=lambda: engine.offer.upscaler,
        )
        self.runner = Runner(
            client=client,
            store=store,
            engine=engine,
            settings=settings,
            outcome=self.outcome,
            pacer=pacer,
            clock=clock,
            delivery_for_job=delivery_for_job,
            images=self.images,
        )
        self.admission = Admission(
            store=store, engine=engine, runner=self.runner, outcome=self.outcome, images=self.images, clock=clock
        )
        self.describe_jobs = DescribeJobs(engine=engine, admission=self.admission, controls=controls)
        self.uploads = UploadGate()  # uploads: one per member at a time, decoded in a pool of their own
        self._settings = settings

    # ----------------------------------------------------------------- what more than one room reads

    @property
    def client(self) -> discord.Client:
        return self.outcome.client

    @client.setter
    def client(self, client: discord.Client) -> None:
        self.outcome.client = self.runner.client = client

    @property
    def settings(self) -> BotSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: BotSettings) -> None:
        self._settings = self.runner.settings = self.images.settings = settings

    @property
    def safety(self) -> ImageSafety:
        return self.outcome.safety

    @safety.setter
    def safety(self, safety: ImageSafety) -> None:
        self.outcome.safety = safety

    def active(self) -> dict[int, JobRecord]:
        """Jobs this process is waiting on, by id."""
        return self.runner.active()

    # ----------------------------------------------------------------- what users ask for

    @refusals_answered
    async def imagine(
        self,
        origin: Origin,
        *,
        prompt: object,
        negative_prompt: object = None,
        aspect: object = None,
        seed: object = None,
        image: bytes | None = None,
        strength: object = None,
        style: str | None = None,
        addons: Addons | None = None,
    ) -> JobRecord | None:
        """Four drafts; with ``image`` (normalized PNG, see ``core.attachments``) they start from it.

        ``addons``: the LoRAs and image reference picked (checked against the engine's offer).

        The user's /prefer defaults fill what was left empty (``core.jobs.preferences``): the style
        suffix is appended, the negative prompt and (without an image) the aspect are used when not given.
        ``style`` names a style preset of the server (``core.styles``), applied instead of the style
        suffix; a name the server does not offer is refused, naming it.
        Parameters typed after the prompt (``--ar 16:9 --seed 5 --no trees``, ``core.prompt_text``)
        fill the options not given, and ``{a, b}`` choices make one job each (``MAX_PERMUTATIONS``).
        """
        asks = read_prompt(
            prompt, self.settings.max_permutations, negative_prompt=negative_prompt, aspect=aspect, seed=seed,
            style=style, addons=addons,
        )
        planned = [await self.prompting.imagine(origin, ask, image, strength) for ask in asks]
        return await admit_each(self.admission, origin, planned)

    @refusals_answered
    async def final(
        self,
        origin: Origin,
        *,
        prompt: object,
        negative_prompt: object = None,
        aspect: object = None,
        seed: object = None,
        model: object = None,
        style: str | None = None,
        addons: Addons | None = None,
    ) -> JobRecord | None:
        """A 1024 px final straight from the prompt (with the user's /prefer defaults where options are empty).

        ``style``: a style preset of the server, as for :meth:`imagine`; parameters after the prompt
        and ``{a, b}`` choices as well.
        """
        asks = read_prompt(
            prompt, self.settings.max_permutations, negative_prompt=negative_prompt, aspect=aspect, seed=seed,
            model=model, style=style, addons=addons,
        )
        planned = [await self.prompting.final(origin, ask) for ask in asks]
        return await admit_each(self.admission, origin, planned)

    @refusals_answered
    async def edit(
        self,
        origin: Origin,
        *,
        prompt: object,
        image: bytes,
        mask: bytes | None = None,
        region: tuple[float, float, float, float] | None = None,
        negative_prompt: object = None,
        strength: object = None,
        seed: object = None,
        model: object = None,
    ) -> JobRecord | None:
        """Inpainting (/edit): paint the white area of ``mask`` (or the ``region`` rectangle, in percent) again.

        ``image`` and ``mask`` are normalized PNGs (``core.attachments``). The user's /prefer style
        suffix, negative prompt and final model apply as for /final; the image keeps its own aspect.
        """
        guild, asked = await self.checks.new_prompt(
            origin, prompt, (STYLE, NEGATIVE, MODEL), finals=True, negative_prompt=negative_prompt, model=model
        )
        plan = plans.edit(
            asked, self.engine.offer, final_size=self.settings.final_size, image=image, mask=mask,
            region=region, strength=strength, seed=seed,
        )
        return await self.admission.admit(origin, plan, guild)

    @refusals_answered
    async def outpaint(self, origin: Origin, job_id: int, action: str) -> JobRecord | None:
        """Zoom out (``zoom15``, ``zoom2``) or pan (``pan_left`` ...) a final: a new final with the new area painted.

        Discord is answered and the limits checked before the canvas (4096 px: seconds) is built, in a thread."""
        if action not in plans.OUTPAINT_ACTIONS:
            raise Refusal(f"Unknown outpaint action {quoted(action, 20)}.")
        await origin.defer()
        guild = await self.checks.guild_of(origin)
        parent, source = await self.checks.final_source(origin, guild, job_id, "zoom and pan", "extend")
        await self.admission.precheck(origin, guild)  # over a limit: no canvas work (admit checks again)
        try:
            extended = await asyncio.to_thread(
                canvas.outpaint, source, budget=self.settings.final_size**2, **plans.OUTPAINT_ACTIONS[action]
            )
        except RequestError as e:
            raise Refusal(str(e)) from e
        plan = await self._with_parent_addons(plans.outpaint(parent, extended, action), parent, origin)
        return await self.admission.admit(origin, plan, guild)

    @refusals_answered
    async def vary(self, origin: Origin, job_id: int, action: str) -> JobRecord | None:
        """Vary (subtle) / Vary (strong) on a final: a new final by image-to-image from its image, new seed."""
        if action not in plans.VARY_ACTIONS:
            raise Refusal(f"Unknown variation {quoted(action, 20)}.")
        guild = await self.checks.guild_of(origin)
        with self.images.holding_result(job_id):  # the row names the final's image: no prune between read and row
            parent, source = await self.checks.final_source(origin, guild, job_id, "Vary buttons", "vary")
            plan = await self._with_parent_addons(plans.vary(parent, source, action, self.engine.offer), parent, origin)
            return await self.admission.admit(origin, plan, guild)

    async def _with_parent_addons(self, plan: Plan, parent: JobRecord, origin: Origin) -> Plan:
        """``plan`` (a new final from ``parent``'s image) with ``parent``'s LoRAs and reference, when it had any.

        An upscaled final takes none (it only enlarges): the add-ons are those of the final it enlarged.
        """
        if parent.params.upscale is not None and parent.parent_id is not None:
            parent = await self.store.get_job(parent.parent_id) or parent
        if not parent.params.loras and not parent.params.reference_image:
            return plan
        if parent.params.reference_image:
            await self.checks.may_remake(origin, parent)
        return addon_plans.carried(plan, await self.checks.rebuild(parent), parent.params)

    @refusals_answered
    async def final_of_draft(self, origin: Origin, job_id: int, index: int) -> JobRecord | None:
        """The final of image ``index`` (0-based) of a draft job (U1-U4, 1️⃣-4️⃣); not an upscale (:meth:`upscale_2x`)."""
        guild = await self.checks.guild_of(origin)
        self.checks.finals_allowed(guild, origin)
        parent, parent_request = await self.checks.parent_draft(origin, job_id, index)
        self.checks.prompt_allowed(parent.prompt, guild, origin)
        asked = await self.checks.preferred_model(origin)
        plan = plans.final_of_draft(
            parent, parent_request, index, asked, self.engine.offer,
            draft_size=self.settings.draft_size, final_size=self.settings.final_size,
        )
        plan = addon_plans.carried(plan, parent_request, parent.params)
        return await self.admission.admit(origin, plan, guild)

    @refusals_answered
    async def variation(self, origin: Origin, job_id: int, index: int) -> JobRecord | None:
        """Four new drafts that start from image ``index`` of a draft job (V1-V4)."""
        guild = await self.checks.guild_of(origin)
        parent, parent_request = await self.checks.parent_draft(origin, job_id, index)
        self.checks.prompt_allowed(parent.prompt, guild, origin)
        plan = addon_plans.carried(plans.variation(parent, parent_request, index), parent_request, parent.params)
        return await self.admission.admit(origin, plan, guild)

    async def remix_source(self, origin: Origin, job_id: int) -> JobRecord:
        """The job whose prompts the Remix form shows, once it may be remixed here. Raises Refusal."""
        return await self.checks.remixable(origin, await self.checks.guild_of(origin), job_id)

    @refusals_answered
    async def remix(
        self, origin: Origin, job_id: int, *, prompt: object, negative_prompt: object = None
    ) -> JobRecord | None:
        """Remix: ``job_id`` again with its seed, size and settings, and the prompts edited in the form.

        The new text is checked like any prompt (length, the server's blocked words); the job keeps
        its kind (drafts stay drafts, a final stays a final).
        """
        guild = await self.checks.guild_of(origin)
        job = await self.checks.remixable(origin, guild, job_id)
        text = self.checks.prompt_allowed(prompt, guild, origin)
        negative = check_negative_prompt(negative_prompt)
        rebuilt = await self.checks.rebuild(job)
        return await self.admission.admit(origin, plans.remix(job, rebuilt, text, negative), guild)

    @refusals_answered
    async def upscale_2x(self, origin: Origin, job_id: int, action: str) -> JobRecord | None:
        """Upscale (subtle) / Upscale (creative) on a final: its image enlarged 2x, as a new final."""
        if action not in plans.UPSCALE_ACTIONS:
            raise Refusal(f"Unknown upscale {quoted(action, 20)}.")
        if not self.engine.offer.upscaler:
            raise Refusal("This bot has no upscaler.")
        guild = await self.checks.guild_of(origin)
        with self.images.holding_result(job_id):  # the row names the final's image: no prune between read and row
            parent, source = await self.checks.final_source(origin, guild, job_id, "Upscale buttons", "upscale")
            if parent.params.upscale is not None:
                raise Refusal(f"Job #{parent.id} is upscaled already.")
            return await self.admission.admit(origin, plans.upscale_2x(parent, source, action), guild)

    @refusals_answered
    async def reroll(self, origin: Origin, job_id: int) -> JobRecord | None:
        """The same job with a new seed (🔁)."""
        guild = await self.checks.guild_of(origin)
        job = await self.checks.again(origin, guild, job_id)
        return await self.admission.admit(origin, plans.reroll(job, await self.checks.rebuild(job)), guild)

    @refusals_answered
    async def repost(self, origin: Origin, job_id: int) -> JobRecord | None:
        """The same job again with the same seed (same images), posted here with live controls."""
        guild = await self.checks.guild_of(origin)
        job = await self.checks.again(origin, guild, job_id, own=True)
        if await self.outcome.post_kept(origin, job):  # a final whose post failed: its kept image, no new run
            return job
        return await self.admission.admit(origin, plans.repost(job, await self.checks.rebuild(job)), guild)

    @refusals_answered
    async def describe(self, origin: Origin, image: bytes) -> tuple[str, ...] | None:
        """/describe: prompt suggestions for ``image`` (a normalized PNG), each posted with a button."""
        return await self.describe_jobs.describe(origin, await self.checks.guild_of(origin), image)

    async def cancel(self, job_id: int, *, user_id: int, moderator: bool, guild_id: int | None) -> str:
        """Cancel a waiting or running job; returns what to tell the user. Raises Refusal."""
        job = await self.checks.get_job(job_id)
        if job.guild_id != guild_id:
            raise Refusal(f"Job #{job.id} was made in another server.")
        if job.user_id != user_id and not moderator:
            raise Refusal(f"Job #{job.id} is not yours; only its author or a moderator can cancel it.")
        if job.finished:
            raise Refusal(f"Job #{job.id} has already {status_word(job)}.")
        return await self.runner.cancel(job)

    # ----------------------------------------------------------------- stored images, start and stop

    async def prune_images(self) -> tuple[int, int]:
        """Apply the retention setting and disk cap to the stored images; returns files and bytes removed."""
        return await self.images.prune()

    async def start(self) -> int:
        """Submit again the jobs that were waiting or running when the bot stopped; returns how many."""
        await self.images.prune()
        return await self.runner.restart()

    async def shutdown(self, timeout: float) -> None:
        """Stop taking jobs, let the engine finish its running job for up to ``timeout`` s, post what is done.

        Jobs still waiting stay queued in the database and are picked up by the next start.
        """
        if self.runner.closing:
            return
        self.runner.closing = True
        self.uploads.close()
        log.info("shutting down: no new jobs; waiting up to %.0f s for the running one", timeout)
        await self.admission.finish_accepting(ACCEPT_GRACE_S)
        await self.runner.shutdown(timeout)
