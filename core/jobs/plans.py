"""What each command asks the engine for: a request and the fields of its new row, as one :class:`Plan`.

Pure functions (no Discord, no store, no engine): the checked options of a command, the user's
defaults as applied (:class:`~core.jobs.preferences.Applied`), the bot's sizes and the engine's offer
go in; the frozen request, the row's fields and the images to keep on disk come out. A Refusal
says what is wrong with the options.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from core import canvas
from core.attachments import image_size
from core.history import JobMode, JobParams, JobRecord
from core.jobs.craft import Craft, drafts_crafted, final_crafted
from core.jobs.preferences import MODEL, Applied, known_aspect
from core.jobs.rows import Plan, Request, new_job_fields
from core.limits import Refusal, check_aspect, check_final_model, check_seed
from engine.api import (
    MAX_SIDE,
    DraftInit,
    DraftRequest,
    EngineOffer,
    FinalRequest,
    ImageInit,
    RequestError,
    UpscaleRequest,
    random_seed,
    size_for_aspect,
    snap_side,
)

DRAFT_COUNT = 4
VARIATION_STEPS = 2
VARIATION_STRENGTH = 0.5
DEFAULT_IMAGE_STRENGTH = 0.6  # /imagine with an image: how far the drafts may move from it
DEFAULT_EDIT_STRENGTH = 0.9  # /edit: the masked area keeps a little of what was there
OUTPAINT_ACTIONS: dict[str, dict[str, Any]] = {
    "zoom15": {"zoom": 1.5},
    "zoom2": {"zoom": 2.0},
    "pan_left": {"pan": "left"},
    "pan_right": {"pan": "right"},
    "pan_up": {"pan": "up"},
    "pan_down": {"pan": "down"},
}
# Vary (subtle) / Vary (strong) on a final: image-to-image from its stored PNG at this strength, new seed.
VARY_ACTIONS: dict[str, float] = {"vary_subtle": 0.35, "vary_strong": 0.75}
# Upscale (subtle) / Upscale (creative) on a final: the engine's 2x upscale mode of each button.
UPSCALE_ACTIONS: dict[str, str] = {"upscale_subtle": "subtle", "upscale_creative": "creative"}


def imagine(
    asked: Applied, offer: EngineOffer, *, draft_size: int, seed: object = None,
    image: bytes | None = None, aspect: object = None, strength: object = None, craft: Craft = Craft(),
) -> Plan:
    """Four drafts from the prompt; with ``image`` (a normalized upload: JPEG) they start from it.

    Without an image the aspect is ``asked.aspect`` (given or preferred); an image keeps its own
    aspect unless ``aspect`` (as given) says otherwise. ``craft``: steps, chaos, tile (``core.jobs.craft``).
    """
    seed = check_seed(seed, count=DRAFT_COUNT)
    if image is None:
        ratio = check_aspect(asked.aspect)
        width, height = size_for_aspect(ratio, draft_size, max_side=offer.max_draft_side)
        request = DraftRequest(
            prompt=asked.prompt, seed=seed, negative_prompt=asked.negative_prompt,
            width=width, height=height, count=DRAFT_COUNT, steps=offer.draft_steps,
        )
        request, params = drafts_crafted(request, asked.noted(JobParams(aspect=ratio)), craft)
        return Plan(request, new_job_fields(request, mode=JobMode.IMAGINE, params=params))
    amount = check_strength(strength, DEFAULT_IMAGE_STRENGTH)
    # Turbo image-to-image runs int(steps x strength) steps: at least one.
    steps = max(offer.draft_steps, math.ceil(1 / amount - 1e-9))
    if steps > 4:
        raise Refusal("With an image, strength must be at least 0.25 (lower keeps the image as it is).")
    params = JobParams()
    if aspect is not None:
        ratio = check_aspect(aspect)
        params = JobParams(aspect=ratio)
        width, height = size_for_aspect(ratio, draft_size, max_side=offer.max_draft_side)
    else:
        width, height = image_job_size(image, draft_size, max_side=offer.max_draft_side)
    request = DraftRequest(
        prompt=asked.prompt, seed=seed, negative_prompt=asked.negative_prompt, width=width, height=height,
        count=DRAFT_COUNT, steps=steps, init=ImageInit(image), strength=amount,
    )
    request, params = drafts_crafted(request, asked.noted(params), craft)
    fields = new_job_fields(request, mode=JobMode.IMG2IMG, params=params)
    return Plan(request, fields, {"init_image": image})


def final(
    asked: Applied, offer: EngineOffer, *, final_size: int, seed: object = None, craft: Craft = Craft()
) -> Plan:
    """A final straight from the prompt, at about ``final_size`` x ``final_size`` pixels (``craft``: steps, tile)."""
    ratio = check_aspect(asked.aspect)
    width, height = size_for_aspect(ratio, final_size, max_side=offer.max_final_side)
    request = FinalRequest(
        prompt=asked.prompt, seed=check_seed(seed), negative_prompt=asked.negative_prompt,
        width=width, height=height, model=check_final_model(asked.model, offer.default_final_model),
    )
    request, params = final_crafted(request, asked.noted(JobParams(aspect=ratio)), craft)
    return Plan(request, new_job_fields(request, mode=JobMode.FINAL, params=params))


def edit(
    asked: Applied, offer: EngineOffer, *, final_size: int, image: bytes, mask: bytes | None = None,
    region: tuple[float, float, float, float] | None = None, strength: object = None, seed: object = None,
) -> Plan:
    """Inpainting: paint the white area of ``mask`` (or the ``region`` rectangle, in percent) again."""
    if (mask is None) == (region is None):
        raise Refusal("Give either a mask image (white = repaint) or a region (left, top, width, height in %).")
    amount = check_strength(strength, DEFAULT_EDIT_STRENGTH)
    planned = offer.final_steps
    if planned * amount < 1:  # inpainting runs int(steps x strength) steps: at least one
        raise Refusal(
            f"Strength {amount:g} is too small: with {planned} steps no step would run. "
            f"Use at least {math.ceil(100 / planned) / 100:g}."
        )
    if mask is not None:
        check_mask_size(image, mask)
    width, height = image_job_size(image, final_size, max_side=offer.max_final_side)
    params = JobParams()
    if mask is None:
        assert region is not None
        try:
            mask = canvas.region_mask(width, height, *region)
        except RequestError as e:
            raise Refusal(str(e)) from e
        params = JobParams(region=region)
    request = FinalRequest(
        prompt=asked.prompt, seed=check_seed(seed), negative_prompt=asked.negative_prompt, width=width,
        height=height, model=check_final_model(asked.model, offer.default_final_model),
        init=ImageInit(image), mask=mask, strength=amount,
    )
    fields = new_job_fields(request, mode=JobMode.INPAINT, params=asked.noted(params))
    return Plan(request, fields, {"init_image": image, "mask_image": mask})


def outpaint(parent: JobRecord, extended: canvas.Canvas, action: str) -> Plan:
    """A new final of ``parent`` on its ``extended`` canvas: only the new area (the mask) is painted."""
    request = FinalRequest(
        prompt=parent.prompt, seed=random_seed(1), negative_prompt=parent.negative_prompt,
        width=extended.width, height=extended.height, model=parent.model,
        init=ImageInit(extended.image), mask=extended.mask, strength=1.0,
    )
    params = JobParams(outpaint=action, style=parent.params.style)  # the style is in the prompt already
    fields = new_job_fields(request, mode=JobMode.OUTPAINT, parent_id=parent.id, params=params)
    return Plan(request, fields, {"init_image": extended.image, "mask_image": extended.mask})


def vary(parent: JobRecord, source: bytes, action: str, offer: EngineOffer) -> Plan:
    """Vary (subtle) / Vary (strong): a new final by image-to-image from ``parent``'s image, new seed.

    The row names ``parent``'s kept result (``init_result``), which is already on disk: no copy is stored.
    An upscaled final is varied at the size of the final it enlarged: the models draw at about 1 MP, and
    2048 px would be four times the memory and time for a worse picture (Upscale it again after),
    with the model's default steps.
    """
    amount = VARY_ACTIONS[action]
    width, height, steps = parent.width, parent.height, parent.steps
    if parent.params.upscale is not None:  # its row's steps are the upscale's (a subtle one: 0), not a drawing's
        width, height, steps = width // 2, height // 2, None
    planned = steps if steps is not None else offer.final_steps
    if planned * amount < 1:  # image-to-image runs int(steps x strength) steps: at least one
        steps = math.ceil(1 / amount - 1e-9)
    request = FinalRequest(
        prompt=parent.prompt, seed=random_seed(1), negative_prompt=parent.negative_prompt,
        width=width, height=height, model=parent.model, steps=steps,
        guidance=parent.guidance, init=ImageInit(source), strength=amount, tile=bool(parent.params.tile),
    )
    params = JobParams(
        vary=action.removeprefix("vary_"), style=parent.params.style, tile=parent.params.tile, init_result=parent.id
    )
    if known_aspect(parent.params.aspect):
        params = dataclasses.replace(params, aspect=parent.params.aspect)
    fields = new_job_fields(request, mode=JobMode.VARY, parent_id=parent.id, params=params)
    return Plan(request, fields)


def final_of_draft(
    parent: JobRecord, parent_request: DraftRequest, index: int, asked: Applied, offer: EngineOffer,
    *, draft_size: int, final_size: int,
) -> Plan:
    """The final of image ``index`` of a draft job, in the clicker's preferred model (``asked.model``).

    A draft made with ``--model`` names its finals' model (``params.final_model``), over the preference;
    a tiled draft makes a tiled final.
    """
    if parent.params.final_model is not None:
        asked = dataclasses.replace(
            asked, model=parent.params.final_model, used=tuple(u for u in asked.used if u != MODEL)
        )
    ratio = parent.params.aspect
    if isinstance(ratio, str) and known_aspect(ratio):
        width, height = size_for_aspect(ratio, final_size, max_side=offer.max_final_side)
    else:
        width, height = scaled(parent.width, parent.height, final_size / draft_size, max_side=offer.max_final_side)
    request = FinalRequest(
        prompt=parent.prompt, seed=parent_request.seeds[index], negative_prompt=parent.negative_prompt,
        width=width, height=height,
        model=asked.model if isinstance(asked.model, str) else offer.default_final_model,
        init=DraftInit(parent_request, index), strength=offer.upscale_strength, tile=parent_request.tile,
    )
    params = asked.noted(JobParams(aspect=ratio) if isinstance(ratio, str) else JobParams())
    # The style is in the parent's prompt already: only its name is carried.
    params = dataclasses.replace(params, style=parent.params.style, tile=parent.params.tile)
    fields = new_job_fields(
        request, mode=JobMode.FINAL_OF_DRAFT, parent_id=parent.id, parent_index=index, params=params
    )
    return Plan(request, fields)


def variation(parent: JobRecord, parent_request: DraftRequest, index: int) -> Plan:
    """Four new drafts that start from image ``index`` of a draft job."""
    request = DraftRequest(
        prompt=parent.prompt, seed=random_seed(DRAFT_COUNT), negative_prompt=parent.negative_prompt,
        width=parent.width, height=parent.height, count=DRAFT_COUNT, steps=VARIATION_STEPS,
        init=DraftInit(parent_request, index), strength=VARIATION_STRENGTH,
        tile=parent_request.tile, chaos=parent_request.chaos,
    )
    params = parent.params
    fields = new_job_fields(request, mode=JobMode.VARIATION, parent_id=parent.id, parent_index=index, params=params)
    return Plan(request, fields)


def reroll(job: JobRecord, rebuilt: Request) -> Plan:
    """``job`` again with a new seed; a job that starts from no draft image records ``job`` as its parent."""
    request = dataclasses.replace(rebuilt, seed=random_seed(job.count))
    return _child_of(job, request, JobMode.REROLL, dataclasses.replace(job.params, reroll_of=job.id))


def repost(job: JobRecord, rebuilt: Request) -> Plan:
    """``job`` again with the same seed (the same images), as a job of its own."""
    fields = new_job_fields(
        rebuilt, mode=job.mode, params=dataclasses.replace(job.params, repost_of=job.id),
        parent_id=job.parent_id, parent_index=job.parent_index,
    )
    return Plan(rebuilt, fields)


def remix(job: JobRecord, rebuilt: Request, prompt: str, negative_prompt: str) -> Plan:
    """``job`` again with the same seed, size and settings, and the prompts edited in the Remix form.

    The remix is a child of ``job`` (``params.remix_of``, and ``parent_id`` as for a reroll).
    """
    request = dataclasses.replace(rebuilt, prompt=prompt, negative_prompt=negative_prompt)
    return _child_of(job, request, JobMode.REMIX, dataclasses.replace(job.params, remix_of=job.id))


def _child_of(job: JobRecord, request: Request, mode: JobMode, params: JobParams) -> Plan:
    """``request`` made again from ``job`` (🔁, Remix): ``job`` is its parent unless ``job`` starts from a
    draft image, whose chain ``parent_id`` and ``parent_index`` must keep naming."""
    fields = new_job_fields(
        request, mode=mode, params=params,
        parent_id=job.id if job.parent_index is None else job.parent_id, parent_index=job.parent_index,
    )
    return Plan(request, fields)


def upscale_2x(parent: JobRecord, source: bytes, action: str) -> Plan:
    """Upscale (subtle) / Upscale (creative): ``parent``'s image (``source``) enlarged 2x, same prompt and seed.

    The row names ``parent``'s kept result (``init_result``), which is already on disk: no copy is stored.
    """
    mode = UPSCALE_ACTIONS[action]
    request = UpscaleRequest(
        image=source, mode=mode, prompt=parent.prompt, negative_prompt=parent.negative_prompt,
        seed=parent.seed, model=parent.model,
    )
    params = JobParams(upscale=mode, init_result=parent.id)
    if known_aspect(parent.params.aspect):
        params = dataclasses.replace(params, aspect=parent.params.aspect)
    fields = new_job_fields(request, mode=JobMode.UPSCALE_2X, parent_id=parent.id, params=params)
    return Plan(request, fields)


def check_strength(value: object, default: float) -> float:
    """An image-to-image strength: more than 0, at most 1 (``default`` when not given)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refusal("Strength must be a number between 0 and 1.")
    if not (0.0 < float(value) <= 1.0):
        raise Refusal(f"Strength {value:g} is out of range: use more than 0 and at most 1.")
    return float(value)


def check_mask_size(image: bytes, mask: bytes) -> None:
    """Refuse a mask whose size is not its image's: each is fitted to the job on its own, so the area would move."""
    image_w, image_h = image_size(image)
    mask_w, mask_h = image_size(mask)
    if (mask_w, mask_h) != (image_w, image_h):
        raise Refusal(
            f"Your mask is {mask_w}×{mask_h} but the image is {image_w}×{image_h}: use a mask of the same size "
            "(white = repaint), or give a region instead."
        )


def image_job_size(png: bytes, side: int, *, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """A job size with the image's aspect at about ``side`` x ``side`` pixels, no side above ``max_side``."""
    try:
        return canvas.edit_size(*image_size(png), budget=side * side, max_side=max_side)
    except RequestError as e:
        raise Refusal(str(e)) from e


def scaled(width: int, height: int, factor: float, *, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``width`` x ``height`` times ``factor``, each side snapped to a job side (engine.api.snap_side).

    The factor stops where the long side reaches ``max_side``: a wide draft's final stays wide.
    """
    factor = min(factor, max_side / max(width, height))
    return snap_side(width * factor), snap_side(height * factor)
