"""/describe: prompt suggestions for an uploaded image, a short job through the engine door without a row.

The room talks to the engine for describe jobs only (``DescribeRequest`` -> ``JobResult.suggestions``)
and posts their answer (:mod:`core.suggestions`, under the buttons a ``core.controls.Controls`` gives).
A describe job is counted against the user's limits like any other
(:meth:`core.jobs.admission.Admission.short_job`) but writes no row: nothing is made that 🔁, U or
/show could repeat, and a restart loses only the wait for the answer.
"""

from __future__ import annotations

import logging
import secrets

import discord

from core import render
from core.controls import Controls
from core.delivery import Delivery, DeliveryError
from core.history import GuildSettings
from core.jobs.admission import Admission
from core.limits import Refusal
from core.origins import Origin
from core.suggestions import clean, suggestions_text
from engine.api import (
    DescribeRequest,
    EngineStopped,
    EngineUnavailable,
    ImageEngine,
    JobCancelled,
    JobFailed,
    QueueFull,
    RequestError,
)

log = logging.getLogger(__name__)

SUGGESTION_COUNT = 4
NOT_OFFERED = "Describe is not set up on this bot."
WORKING = "🔎 Looking at your image…"


class DescribeJobs:
    """Runs describe jobs and answers them with their suggestions."""

    def __init__(self, *, engine: ImageEngine, admission: Admission, controls: Controls) -> None:
        self._engine = engine
        self._controls = controls
        self._admission = admission

    async def describe(self, origin: Origin, guild: GuildSettings, image: bytes) -> tuple[str, ...] | None:
        """Suggestions for ``image`` (a normalized upload: JPEG), posted with a button each; None when none came.

        Raises Refusal (nothing was posted) when describe is off, the image is refused or a limit says no.
        """
        if not self._engine.offer.describe:
            raise Refusal(NOT_OFFERED)
        try:
            request = DescribeRequest(image, count=SUGGESTION_COUNT).validate()
        except RequestError as e:
            raise Refusal(str(e)) from e
        async with self._admission.short_job(origin, guild):
            try:
                delivery = await origin.acknowledge(WORKING)
            except (DeliveryError, discord.HTTPException) as e:
                log.warning("describe for user %s not acknowledged: %s", origin.user_id, e)
                return None
            suggestions = await self._run(origin, request, delivery)
            if not suggestions:
                return None
            try:
                text = suggestions_text(suggestions, origin.user_id)
                await delivery.post(text, [], self._controls.for_suggestions(len(suggestions)))
            except DeliveryError as e:
                log.warning("describe for user %s: the answer could not be posted: %s", origin.user_id, e)
                return None
            return tuple(suggestions)

    async def _run(self, origin: Origin, request: DescribeRequest, delivery: Delivery) -> list[str]:
        """The engine's suggestions; a failure is shown on the message instead (and an empty list returned)."""
        job_id = f"describe-{secrets.token_hex(6)}"
        try:
            handle = await self._engine.submit(request, user=str(origin.user_id), job_id=job_id)
            result = await handle.result()
        except (RequestError, QueueFull, JobFailed) as e:
            log.info("describe %s for user %s: %s", job_id, origin.user_id, e)
            text = str(e) if not render.internal_detail(str(e)) else "Something went wrong on my side; it is logged."
            return await self._say(delivery, f"⚠️ {text}")
        except (EngineStopped, EngineUnavailable, JobCancelled) as e:
            log.info("describe %s for user %s not done: %s", job_id, origin.user_id, e)
            return await self._say(delivery, "⚠️ The image engine is not available right now; try again in a minute.")
        suggestions = clean(result.suggestions)
        if not suggestions:
            log.warning("describe %s gave no suggestions", job_id)
            return await self._say(delivery, "⚠️ I could not find words for this image; try another one.")
        return suggestions

    @staticmethod
    async def _say(delivery: Delivery, text: str) -> list[str]:
        try:
            await delivery.show(text)
        except discord.HTTPException as e:
            log.info("describe: could not show %r: %s", text, e)
        return []
