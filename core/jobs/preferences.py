"""A member's /prefer defaults: checked when stored, applied to a new request in one place.

``apply_prefs`` fills what a request left empty and returns the result as one frozen value
(:class:`Applied`), including which defaults it used, so the row can say so (``params.prefs``).
Pure: the caller reads the :class:`~core.history.UserPrefs` and stores what ``checked_pref_changes`` returns.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.echo import quoted
from core.history import JobParams, UserPrefs
from core.limits import (
    Refusal,
    check_aspect,
    check_final_model,
    check_negative_prompt,
    check_prompt,
    check_style_suffix,
    with_style,
)
from core.styles import Style, apply_style

log = logging.getLogger(__name__)

# What a request may take from the user's defaults (names as in UserPrefs and JobParams.prefs).
STYLE, NEGATIVE, ASPECT, MODEL = "style_suffix", "negative_prompt", "aspect", "final_model"


@dataclass(frozen=True)
class Applied:
    """A request's options after the user's defaults filled the empty ones.

    ``aspect`` and ``model`` are as given (or preferred), not yet checked: the plan checks them.
    ``used`` names the defaults that were used, sorted; ``style`` the style preset applied, if any.
    """

    prompt: str = ""
    negative_prompt: str = ""
    aspect: object = None
    model: object = None
    used: tuple[str, ...] = ()
    style: str | None = None

    def noted(self, params: JobParams) -> JobParams:
        """``params`` noting which defaults and style shaped the job (the row holds the effective values)."""
        if self.used:
            params = dataclasses.replace(params, prefs=tuple(sorted(self.used)))
        if self.style is not None:
            params = dataclasses.replace(params, style=self.style)
        return params


def apply_prefs(
    prefs: UserPrefs,
    fill: Collection[str],
    *,
    prompt: str = "",
    negative_prompt: object = None,
    aspect: object = None,
    model: object = None,
    blocked_words: Iterable[str] = (),
    age_restricted: bool = False,
    style: Style | None = None,
) -> Applied:
    """``prompt`` (already checked) and the options, with the defaults named in ``fill`` where they are empty.

    The style suffix is appended (not twice) and the longer prompt is held to the server's blocked
    words too; a preferred aspect or model this bot no longer knows is left out. Raises Refusal.
    A ``style`` preset the member chose is applied instead of their style suffix, after the
    negative prompt is settled (``core.styles.apply_style``: its negative prompt is added to that one).
    """
    used: list[str] = []
    if STYLE in fill and style is None:
        styled = with_style(prompt, prefs.style_suffix)
        if styled != prompt:
            used.append(STYLE)
            check_prompt(styled, blocked_words=blocked_words, age_restricted=age_restricted)
            prompt = styled
    if NEGATIVE in fill and negative_prompt is None and prefs.negative_prompt:
        used.append(NEGATIVE)
        negative = check_negative_prompt(prefs.negative_prompt)
    else:
        negative = check_negative_prompt(negative_prompt)
    if ASPECT in fill and aspect is None and prefs.aspect is not None and known_aspect(prefs.aspect):
        used.append(ASPECT)
        aspect = prefs.aspect
    if MODEL in fill and model is None and prefs.final_model is not None:
        if _offered(prefs.final_model):
            used.append(MODEL)
            model = prefs.final_model
        else:
            log.info("user %s prefers model %r, which this bot no longer offers", prefs.user_id, prefs.final_model)
    if style is not None:
        prompt, negative = apply_style(
            prompt, negative, style, blocked_words=blocked_words, age_restricted=age_restricted
        )
    return Applied(prompt, negative, aspect, model, tuple(sorted(used)), style.name if style is not None else None)


def checked_pref_changes(changes: Mapping[str, Any], default_final_model: str) -> dict[str, Any]:
    """``changes`` to a user's defaults, checked (``None`` resets one). Raises Refusal naming the first bad one.

    Fields: ``aspect``, ``negative_prompt``, ``style_suffix``, ``final_model``, ``dm_results``.
    """
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name == ASPECT:
            checked[name] = None if value is None else check_aspect(value)
        elif name == NEGATIVE:
            checked[name] = check_negative_prompt(value) or None
        elif name == STYLE:
            checked[name] = check_style_suffix(value)
        elif name == MODEL:
            checked[name] = None if value is None else check_final_model(value, default_final_model)
        elif name == "dm_results":
            if value is not None and not isinstance(value, bool):
                raise Refusal("“DM results” is on or off (true or false).")
            checked[name] = bool(value)
        else:
            raise Refusal(f"There is no preference called {quoted(name, 30)}.")
    return checked


def known_aspect(ratio: object) -> bool:
    """Whether ``ratio`` is an aspect this bot offers (a stored or preferred one may be out of date)."""
    try:
        check_aspect(ratio)
    except Refusal:
        return False
    return isinstance(ratio, str)


def _offered(model: str) -> bool:
    try:
        check_final_model(model, "")
    except Refusal:
        return False
    return True
