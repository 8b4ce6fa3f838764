"""Optional model add-ons of the engine: LoRA, image reference (IP-Adapter), upscale 2x, describe.

Each lives in its own module with its real loading code, a ``missing(settings)`` check that
gives one line when its weights are not there, and a ``download(settings)`` that fetches them
(safetensors only, with progress bars). The tiny preset builds tiny random versions of all of
them (:mod:`engine.addons.tiny`). Nothing here imports torch at import time.

At start the engine calls :func:`addon_problems` once, logs each line, and offers only the
add-ons that are not in it (the bot hides the options of the others).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..settings_base import SettingsError
from .settings import AddonMissing, AddonSettings

log = logging.getLogger(__name__)

ADDONS = ("lora", "reference", "upscale", "describe")
_MODULES = {"lora": "lora", "reference": "reference", "upscale": "upscale", "describe": "describe"}

__all__ = [
    "ADDONS",
    "AddonMissing",
    "AddonSettings",
    "addon_problems",
    "download",
    "offer_fields",
]


def _module(addon: str):
    return importlib.import_module(f"{__name__}.{_MODULES[addon]}")


def enabled(settings: AddonSettings, addon: str) -> bool:
    """Whether the owner configured ``addon`` at all (upscale is always on: Lanczos stands in)."""
    return {
        "lora": bool(settings.lora_dir or settings.lora_hub),
        "reference": bool(settings.reference_model),
        "upscale": True,
        "describe": bool(settings.describe_model),
    }[addon]


def addon_problems(settings: AddonSettings) -> dict[str, str]:
    """{add-on: one line} for each configured add-on that cannot be used; add-ons switched off are not listed."""
    problems: dict[str, str] = {}
    for addon in ADDONS:
        line = _module(addon).missing(settings)
        if line:
            problems[addon] = line
    return problems


def available(settings: AddonSettings) -> list[str]:
    """The add-ons the bot may offer: configured and with their weights on disk."""
    problems = addon_problems(settings)
    return [addon for addon in ADDONS if enabled(settings, addon) and addon not in problems]


def offer_fields(settings: AddonSettings) -> dict[str, Any]:
    """The add-on fields of ``engine.api.EngineOffer`` (``loras``, ``reference``, ``upscaler``, ``describe``).

    Logs each problem line once; an add-on with a problem is not offered (upscale falls back to Lanczos).
    """
    from pathlib import Path

    problems = addon_problems(settings)
    for addon, line in problems.items():
        log.warning("add-on %s: %s", addon, line)
    on = set(available(settings))
    loras: tuple[str, ...] = ()
    if "lora" in on:
        from .lora import LoraLibrary

        loras = tuple(LoraLibrary(settings).names())
    upscaler = "Lanczos"
    if settings.upscaler_model and "upscale" not in problems:
        upscaler = Path(settings.upscaler_model.removeprefix("tiny:")).stem
    return {"loras": loras, "reference": "reference" in on, "upscaler": upscaler, "describe": "describe" in on}


def download(settings: AddonSettings, addons: list[str] | None = None) -> dict[str, object]:
    """Run each add-on's ``download`` (all configured ones by default); returns what each fetched."""
    results: dict[str, object] = {}
    for addon in addons or list(ADDONS):
        if addon not in _MODULES:
            raise SettingsError(f"unknown add-on {addon!r}: one of {', '.join(ADDONS)}")
        if enabled(settings, addon):
            results[addon] = _module(addon).download(settings)
    return results

