"""The engine's model add-ons as a member picks them: LoRAs (up to two, weighted) and an image reference.

Pure, as :mod:`core.jobs.plans` is: :func:`checked` holds what a command was given against what the
engine offers (``EngineOffer.loras``, ``.reference``) and refuses with a sentence naming the option
(or the parameter typed in the prompt: :meth:`Addons.over_text`); :func:`applied` puts the checked
choice on a planned job (its request, its row's ``params`` and the reference image to keep);
:func:`carried` copies a parent's add-ons onto a job made from it (U, V), so a final of a draft made
with a LoRA keeps the LoRA.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.echo import quoted, shown
from core.history import JobParams
from core.jobs.rows import Plan, Request
from core.limits import Refusal
from engine.api import (
    LORA_WEIGHT_RANGE,
    MAX_LORAS,
    REFERENCE_MODES,
    REFERENCE_WEIGHT_RANGE,
    EngineOffer,
    UpscaleRequest,
)

if TYPE_CHECKING:
    from core.prompt_text import PromptParams

DEFAULT_LORA_WEIGHT = 1.0
DEFAULT_REFERENCE_WEIGHT = 0.5
DEFAULT_REFERENCE_MODE = "full"
NO_LORAS = "LoRAs are not set up on this bot."
NO_REFERENCE = "Image references are not set up on this bot."
# The options of each LoRA slot: (name option, weight option).
LORA_SLOTS = (("lora", "lora_weight"), ("lora2", "lora2_weight"))
TYPED_LORA = ("--lora", "--lora weight")  # how refusals name a LoRA typed in the prompt
KNOWN_LORAS_SHOWN = 8  # LoRAs named in the refusal of an unknown one typed in the prompt


@dataclass(frozen=True)
class OptionNames:
    """What refusals call each pick: the slash option, or the parameter typed after the prompt."""

    loras: tuple[tuple[str, str], ...] = LORA_SLOTS
    reference_weight: str = "reference_weight"
    reference_mode: str = "reference_mode"


@dataclass(frozen=True)
class Addons:
    """What a command was given for the add-ons, unchecked.

    ``loras`` holds one (name, weight) pair per LoRA slot that was used; a name of ``None`` is a
    weight given without its LoRA, a weight of ``None`` takes :data:`DEFAULT_LORA_WEIGHT`.
    ``reference`` is a normalized upload (JPEG, ``core.attachments``). ``names``: how refusals name the picks.
    """

    loras: tuple[tuple[str | None, float | None], ...] = ()
    reference: bytes | None = None
    reference_weight: float | None = None
    reference_mode: str | None = None
    names: OptionNames = OptionNames()

    @classmethod
    def from_options(
        cls,
        *,
        lora: str | None = None,
        lora_weight: float | None = None,
        lora2: str | None = None,
        lora2_weight: float | None = None,
        reference: bytes | None = None,
        reference_weight: float | None = None,
        reference_mode: str | None = None,
    ) -> Addons:
        """The add-ons of a slash command's options (slots left empty are left out)."""
        slots = ((lora, lora_weight), (lora2, lora2_weight))
        loras = tuple((name, weight) for name, weight in slots if name is not None or weight is not None)
        return cls(loras, reference, reference_weight, reference_mode)

    def over_text(self, typed: PromptParams) -> Addons:
        """These picks (a command's options) over ``--lora``, ``--iw`` and ``--sref`` typed in the prompt.

        An option given wins: any LoRA option replaces the typed LoRAs, ``reference_weight`` the
        ``--iw``, ``reference_mode`` the ``--sref``.
        """
        loras, lora_names = self.loras, self.names.loras
        if not loras and typed.loras:
            loras, lora_names = typed.loras, (TYPED_LORA,) * len(typed.loras)
        weight, weight_name = self.reference_weight, self.names.reference_weight
        if weight is None and typed.reference_weight is not None:
            weight, weight_name = typed.reference_weight, "--iw"
        mode, mode_name = self.reference_mode, self.names.reference_mode
        if mode is None and typed.reference_style:
            mode, mode_name = "style", "--sref"
        return Addons(loras, self.reference, weight, mode, OptionNames(lora_names, weight_name, mode_name))

    @property
    def empty(self) -> bool:
        return not self.loras and self.reference is None and self.reference_weight is None and (
            self.reference_mode is None
        )


@dataclass(frozen=True)
class CheckedAddons:
    """Add-ons the engine offers, with their weights: ready for a request."""

    loras: tuple[tuple[str, float], ...] = ()
    reference: bytes | None = None
    reference_weight: float = DEFAULT_REFERENCE_WEIGHT
    reference_mode: str = DEFAULT_REFERENCE_MODE


def _weight(value: object, option: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refusal(f"{option} must be a number from {low:g} to {high:g}.")
    if not low <= value <= high:
        raise Refusal(f"{option} {value:g} is out of range: use {low:g} to {high:g}.")
    return float(value)


def _unknown_lora(name: str, option: str, known: tuple[str, ...]) -> str:
    if option != TYPED_LORA[0]:  # a slash option: its autocomplete lists them
        return f"There is no LoRA {quoted(name)} on this bot: pick one of the list in {option}."
    listed = ", ".join(known[:KNOWN_LORAS_SHOWN]) + (", …" if len(known) > KNOWN_LORAS_SHOWN else "")
    where = "--lora"
    if ":" in name:  # perhaps a weight that is not a number (the text's parser kept it in the name)
        where += f"; a weight after “:” is a number, e.g. {shown(name.rpartition(':')[0], 40)}:0.8"
    return f"There is no LoRA {quoted(name)} on this bot ({where}); its LoRAs are {listed}."


def checked(addons: Addons, offer: EngineOffer) -> CheckedAddons:
    """``addons`` against what ``offer`` has; raises Refusal naming the option that is wrong."""
    loras: list[tuple[str, float]] = []
    if len(addons.loras) > MAX_LORAS:
        raise Refusal(f"At most {MAX_LORAS} LoRAs can be stacked.")
    names = addons.names
    for (name, weight), (name_option, weight_option) in zip(addons.loras, names.loras, strict=False):
        if name is None:
            raise Refusal(f"{weight_option} only matters with a LoRA: pick one in {name_option}, or leave it out.")
        if not offer.loras:
            raise Refusal(NO_LORAS)
        if name not in offer.loras:
            raise Refusal(_unknown_lora(name, name_option, offer.loras))
        if any(name == seen for seen, _ in loras):
            raise Refusal(f"LoRA {quoted(name)} is given twice: pick two different ones, or one with another weight.")
        value = DEFAULT_LORA_WEIGHT if weight is None else _weight(weight, weight_option, *LORA_WEIGHT_RANGE)
        loras.append((name, value))
    if addons.reference is None:
        given = ((names.reference_weight, addons.reference_weight), (names.reference_mode, addons.reference_mode))
        for option, setting in given:
            if setting is not None:
                raise Refusal(f"{option} only matters with a reference image: attach one, or leave {option} out.")
        return CheckedAddons(tuple(loras))
    if not offer.reference:
        raise Refusal(NO_REFERENCE)
    weight = DEFAULT_REFERENCE_WEIGHT
    if addons.reference_weight is not None:
        weight = _weight(addons.reference_weight, names.reference_weight, *REFERENCE_WEIGHT_RANGE)
    mode = DEFAULT_REFERENCE_MODE if addons.reference_mode is None else addons.reference_mode
    if mode not in REFERENCE_MODES:
        raise Refusal(f"reference_mode {quoted(mode, 40)} is unknown: use {' or '.join(REFERENCE_MODES)}.")
    return CheckedAddons(tuple(loras), addons.reference, weight, mode)


def applied(plan: Plan, addons: CheckedAddons) -> Plan:
    """``plan`` with the add-ons on its request and in its row; the reference image is kept with the job's images."""
    if not addons.loras and addons.reference is None:
        return plan
    if isinstance(plan.request, UpscaleRequest):  # an upscale draws from its image only
        raise Refusal("LoRAs and image references do not apply to an upscale.")
    request = dataclasses.replace(plan.request, loras=addons.loras)
    params: JobParams = plan.fields["params"]
    params = dataclasses.replace(params, loras=addons.loras)
    keep = dict(plan.keep)
    if addons.reference is not None:
        request = dataclasses.replace(
            request,
            reference=addons.reference,
            reference_weight=addons.reference_weight,
            reference_mode=addons.reference_mode,
        )
        params = dataclasses.replace(
            params, reference_weight=addons.reference_weight, reference_mode=addons.reference_mode
        )
        keep["reference_image"] = addons.reference  # its key becomes params.reference_image
    return dataclasses.replace(plan, request=request, fields={**plan.fields, "params": params}, keep=keep)


def carried(plan: Plan, source: Request, source_params: JobParams) -> Plan:
    """``plan`` (made from the job of ``source_params``, whose rebuilt request is ``source``) with its add-ons.

    The reference is not stored again: the new row names the parent's stored image.
    """
    if isinstance(source, UpscaleRequest) or isinstance(plan.request, UpscaleRequest):
        return plan  # an upscale has no add-ons to carry, and takes none
    if not source.loras and source.reference is None:
        return plan
    request = dataclasses.replace(
        plan.request,
        loras=source.loras,
        reference=source.reference,
        reference_weight=source.reference_weight,
        reference_mode=source.reference_mode,
    )
    params: JobParams = plan.fields["params"]
    params = dataclasses.replace(
        params,
        loras=source.loras,
        reference_image=source_params.reference_image,
        reference_weight=source_params.reference_weight,
        reference_mode=source_params.reference_mode,
    )
    return dataclasses.replace(plan, request=request, fields={**plan.fields, "params": params})
