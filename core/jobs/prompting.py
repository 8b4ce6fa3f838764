"""``Prompting``: one typed prompt (an :class:`~core.jobs.craft.Ask`) checked and planned as a new job.

The opening step `/imagine` and `/final` share, once per ``{a, b}`` combination: the server and the
prompt checked (:class:`~core.jobs.checks.Checks`, with the user's defaults and the style preset),
the pure plan (:mod:`core.jobs.plans`) and the add-ons picked (:mod:`core.jobs.addons`). Touches
nothing itself; what it returns goes to :func:`core.jobs.permutations.admit_each`.
"""

from __future__ import annotations

from collections.abc import Callable

from core.history import GuildSettings
from core.jobs import addons as addon_plans
from core.jobs import plans
from core.jobs.checks import Checks
from core.jobs.craft import Ask, for_drafts, for_final
from core.jobs.preferences import ASPECT, MODEL, NEGATIVE, STYLE
from core.jobs.rows import Plan
from core.origins import Origin
from core.settings import BotSettings
from engine.api import ImageEngine


class Prompting:
    def __init__(self, checks: Checks, engine: ImageEngine, settings: Callable[[], BotSettings]) -> None:
        self._checks = checks
        self._engine = engine
        self._settings = settings  # read per job: the service's settings may be replaced

    async def imagine(
        self, origin: Origin, ask: Ask, image: bytes | None, strength: object
    ) -> tuple[GuildSettings, Plan]:
        """Four drafts of ``ask`` (from ``image`` when given)."""
        offer = self._engine.offer
        fill = (STYLE, NEGATIVE) if image is not None else (STYLE, NEGATIVE, ASPECT)
        guild, asked = await self._checks.new_prompt(
            origin, ask.prompt, fill, negative_prompt=ask.negative_prompt, aspect=ask.aspect, style=ask.style
        )
        plan = plans.imagine(
            asked, offer, draft_size=self._settings().draft_size, seed=ask.seed,
            image=image, aspect=ask.aspect, strength=strength,
            craft=for_drafts(ask, offer.default_final_model),
        )
        return guild, addon_plans.applied(plan, addon_plans.checked(ask.addons, offer))

    async def final(self, origin: Origin, ask: Ask) -> tuple[GuildSettings, Plan]:
        """A final of ``ask`` straight from the prompt."""
        offer = self._engine.offer
        guild, asked = await self._checks.new_prompt(
            origin, ask.prompt, (STYLE, NEGATIVE, ASPECT, MODEL), finals=True,
            negative_prompt=ask.negative_prompt, aspect=ask.aspect, model=ask.model, style=ask.style,
        )
        plan = plans.final(asked, offer, final_size=self._settings().final_size, seed=ask.seed, craft=for_final(ask))
        return guild, addon_plans.applied(plan, addon_plans.checked(ask.addons, offer))
