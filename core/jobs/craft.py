"""What the text of a prompt asks for beyond the prompt: ``--ar 16:9 --seed 5 --no trees`` and ``{a, b}``.

Pure (no Discord, no store, no engine). :func:`read_prompt` turns the text of /imagine, /final or
an image channel into one :class:`Ask` per permutation, the slash command's options laid over the
parameters typed in the text (an option given wins; the add-ons ``--lora --iw --sref`` become the
Ask's :class:`~core.jobs.addons.Addons`, checked later against the engine's offer). :class:`Craft` holds
what the request builders (:mod:`core.jobs.plans`) take beyond the options they always had: steps, chaos,
tiling, and the final model a draft's U1-U4 use. Every refusal names the parameter (:mod:`core.prompt_text`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.history import JobParams
from core.jobs.addons import Addons
from core.limits import Refusal, check_final_model
from core.prompt_text import expand_permutations, split_parameters
from engine.api import DraftRequest, FinalRequest

DRAFT_STEPS = (1, 4)  # SDXL Turbo's range


@dataclass(frozen=True)
class Craft:
    """The prompt-craft parameters of one job (``None``: not asked for; the engine's default applies)."""

    steps: int | None = None
    chaos: int | None = None
    tile: bool = False
    final_model: str | None = None  # drafts: the model of their finals (--model)


@dataclass(frozen=True)
class Ask:
    """One job's worth of what the user typed: the prompt and options, slash options over the text's.

    The options are as given (objects from a raw interaction too): the plans check them.
    """

    prompt: str
    negative_prompt: object = None
    aspect: object = None
    seed: object = None
    model: object = None
    style: str | None = None
    steps: int | None = None
    chaos: int | None = None
    tile: bool = False
    addons: Addons = Addons()  # LoRAs and image reference: the options' over those typed in the text


def read_prompt(
    prompt: object,
    limit: int,
    *,
    negative_prompt: object = None,
    aspect: object = None,
    seed: object = None,
    model: object = None,
    style: str | None = None,
    addons: Addons | None = None,
) -> list[Ask]:
    """One :class:`Ask` per combination of ``{a, b}`` groups (at most ``limit``), in order. Raises Refusal.

    Braces are expanded first, so a group may choose a parameter too (``--ar {1:1, 16:9}``).
    A prompt that is not text is passed on unread: the prompt check refuses it.
    """
    picked = addons or Addons()
    if not isinstance(prompt, str):
        return [Ask(prompt="", negative_prompt=negative_prompt, aspect=aspect, seed=seed, model=model, style=style,
                    addons=picked)]
    asks = []
    texts = expand_permutations(prompt, limit) if "{" in prompt or "}" in prompt else [prompt]
    for text in texts:
        given = split_parameters(text)
        asks.append(
            Ask(
                # Without parameters the text goes on as typed: the prompt check says what is wrong with it.
                prompt=given.prompt if given.recorded() else text,
                negative_prompt=negative_prompt if negative_prompt is not None else given.negative,
                aspect=aspect if aspect is not None else given.aspect,
                seed=seed if seed is not None else given.seed,
                model=model if model is not None else given.model,
                style=style if style is not None else given.style,
                steps=given.steps,
                chaos=given.chaos,
                tile=bool(given.tile),
                addons=picked.over_text(given),
            )
        )
    return asks


def for_drafts(ask: Ask, default_final_model: str) -> Craft:
    """The craft of /imagine drafts: steps within Turbo's range, chaos, tile, the finals' model."""
    low, high = DRAFT_STEPS
    if ask.steps is not None and not (low <= ask.steps <= high):
        raise Refusal(f"--steps for drafts is {low} to {high} (SDXL Turbo), not {ask.steps}; /final takes up to 100.")
    model = check_final_model(ask.model, default_final_model) if ask.model is not None else None
    return Craft(steps=ask.steps, chaos=ask.chaos, tile=ask.tile, final_model=model)


def for_final(ask: Ask) -> Craft:
    """The craft of /final: steps (1-100) and tile; chaos spreads drafts, so a final refuses it."""
    if ask.chaos is not None:
        raise Refusal("--chaos spreads the four drafts of /imagine; /final makes one image, so leave --chaos out.")
    return Craft(steps=ask.steps, tile=ask.tile)


def drafts_crafted(request: DraftRequest, params: JobParams, craft: Craft) -> tuple[DraftRequest, JobParams]:
    """``request`` and its row's ``params`` with ``craft`` applied (the row's steps column follows the request)."""
    if craft.steps is not None:
        if request.init is not None and craft.steps * request.strength < 1:
            raise Refusal(
                f"--steps {craft.steps} with strength {request.strength:g}: no step would run; "
                "use more steps or a higher strength."
            )
        request = dataclasses.replace(request, steps=craft.steps)
    if craft.chaos:
        request = dataclasses.replace(request, chaos=craft.chaos)
    if craft.tile:
        request = dataclasses.replace(request, tile=True)
    return request, noted(params, craft)


def final_crafted(request: FinalRequest, params: JobParams, craft: Craft) -> tuple[FinalRequest, JobParams]:
    """``request`` and its row's ``params`` with the steps and tiling of ``craft``."""
    if craft.steps is not None:
        request = dataclasses.replace(request, steps=craft.steps)
    if craft.tile:
        request = dataclasses.replace(request, tile=True)
    return request, noted(params, craft)


def noted(params: JobParams, craft: Craft) -> JobParams:
    """``params`` recording chaos, tiling and the finals' model (steps are a column of the row)."""
    return dataclasses.replace(
        params,
        chaos=craft.chaos if craft.chaos else params.chaos,
        tile=True if craft.tile else params.tile,
        final_model=craft.final_model if craft.final_model is not None else params.final_model,
    )
