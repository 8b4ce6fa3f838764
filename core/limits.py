"""Checks on what users send, before anything is stored or queued.

Pure functions: each returns the cleaned value or raises :class:`Refusal` with a short,
specific message for the user. The cogs and the job service share them, so a slash
command, a button, a reaction and a message in an image channel are held to the same rules.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Iterable

from core.echo import BIDI_CONTROLS, quoted
from engine.api import ASPECTS, FINAL_MODELS, MAX_PROMPT_CHARS, MAX_SEED, random_seed

DEFAULT_ASPECT = "1:1"
MAX_SEARCH_CHARS = 40  # /history search text; it travels inside button custom ids (100 chars at most)
MAX_BLOCKED_WORDS = 200
MAX_BLOCKED_WORD_CHARS = 50

# Characters that render as nothing but are not whitespace by str.isspace(): the Unicode
# "format" category (zero-width space/joiners, bidi marks, soft hyphen, BOM, ...) plus a few
# letters and symbols that draw blank and are known tricks for "empty" names and messages.
_BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Refusal(Exception):
    """A request we turn down; ``str(refusal)`` is the message for the user."""


def is_invisible(ch: str) -> bool:
    return ch.isspace() or ch in _BLANK_LOOKALIKES or unicodedata.category(ch) in ("Cf", "Cc")


def clean_text(text: str) -> str:
    """Control characters become spaces; bidi controls go (they only reorder how the text shows, and the
    text encoder reads nothing in them); invisible characters at either end are dropped."""
    text = BIDI_CONTROLS.sub("", _CONTROL.sub(" ", text))
    start, end = 0, len(text)
    while start < end and is_invisible(text[start]):
        start += 1
    while end > start and is_invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def check_prompt(
    prompt: object,
    *,
    blocked_words: Iterable[str] = (),
    age_restricted: bool = False,
) -> str:
    """The prompt, cleaned; refuses empty, invisible-only, too long and (outside age-restricted channels) blocked.

    Emoji-only prompts are fine: the text encoder reads them, and people use them.
    """
    if not isinstance(prompt, str):
        raise Refusal("Your prompt is empty: describe the image you want.")
    cleaned = clean_text(prompt)
    if not cleaned:
        if prompt:
            raise Refusal("Your prompt has only blank or invisible characters: describe the image you want.")
        raise Refusal("Your prompt is empty: describe the image you want.")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise Refusal(f"Your prompt is {len(cleaned):,} characters long; the limit is {MAX_PROMPT_CHARS:,}.")
    if not age_restricted:
        word = find_blocked_word(cleaned, blocked_words)
        if word is not None:
            raise Refusal(f"{quoted(word)} is not allowed in prompts on this server outside age-restricted channels.")
    return cleaned


def check_negative_prompt(negative: object) -> str:
    """The negative prompt, cleaned ("" when absent or blank)."""
    if negative is None:
        return ""
    if not isinstance(negative, str):
        raise Refusal("The negative prompt must be text.")
    cleaned = clean_text(negative)
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise Refusal(f"Your negative prompt is {len(cleaned):,} characters long; the limit is {MAX_PROMPT_CHARS:,}.")
    return cleaned


def check_seed(seed: object, *, count: int = 1) -> int:
    """A seed in 0..2^32-1 that leaves room for ``count`` images (seed, seed+1, ...); None draws one."""
    highest = MAX_SEED - (count - 1)
    if seed is None:
        return random_seed(count)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise Refusal(f"The seed must be a whole number from 0 to {MAX_SEED}.")
    if not (0 <= seed <= MAX_SEED):
        raise Refusal(f"Seed {seed} is out of range: use a whole number from 0 to {MAX_SEED}.")
    if seed > highest:
        raise Refusal(f"Seed {seed} leaves no room for {count} images (seeds go up by one); use at most {highest}.")
    return seed


def check_aspect(aspect: object) -> str:
    """One of the offered aspect ratios; None means square."""
    if aspect is None:
        return DEFAULT_ASPECT
    value = aspect.strip() if isinstance(aspect, str) else aspect
    if value not in ASPECTS:
        raise Refusal(f"Unknown aspect ratio {quoted(aspect, 20)}: choose one of {', '.join(ASPECTS)}.")
    return value


def check_final_model(model: object, default: str) -> str:
    if model is None:
        return default
    value = model.strip().lower() if isinstance(model, str) else model
    if value not in FINAL_MODELS:
        raise Refusal(f"Unknown model {quoted(model, 20)}: choose one of {', '.join(FINAL_MODELS)}.")
    return value


def check_search(search: object) -> str | None:
    """History search text, cleaned; None when absent or blank."""
    if search is None:
        return None
    if not isinstance(search, str):
        raise Refusal("Search text must be text.")
    cleaned = clean_text(search)
    if len(cleaned) > MAX_SEARCH_CHARS:
        raise Refusal(f"Search text is {len(cleaned)} characters long; the limit is {MAX_SEARCH_CHARS}.")
    return cleaned or None


# A word ends where letters end: digits, "_" and punctuation around it do not hide it ("_nude_", "nude2").
_NOT_LETTER = r"[\W\d_]"
_LETTER_BEFORE = r"(?<![^\W\d_])"
_LETTER_AFTER = r"(?![^\W\d_])"


def normalize_for_matching(text: str) -> str:
    """``text`` as blocked words are matched against it: what the text encoder reads, not how it is spelt.

    NFKC (fullwidth and styled letters become plain ones), invisible characters (soft hyphen,
    zero-width space, joiners, blank lookalikes) removed wherever they are, lookalike letters of
    other scripts folded to the Latin ones they pass for (:func:`fold_confusables`), case folded.
    """
    return fold_confusables(_visible(text)).casefold()


def _visible(text: str) -> str:
    """NFKC, without invisible characters; control characters become spaces."""
    return "".join(
        " " if unicodedata.category(ch) == "Cc" else ch
        for ch in unicodedata.normalize("NFKC", text)
        if not (ch in _BLANK_LOOKALIKES or unicodedata.category(ch) == "Cf")
    )


_WORD = re.compile(r"[^\W\d_]+")


@functools.cache
def _latin_lookalikes() -> dict[str, str]:
    """Each letter that Unicode's confusables table says passes for a Latin letter (a-z, A-Z), and that letter.

    From ``confusable_homoglyphs`` (MIT), which ships the table; read once, on the first prompt checked.
    """
    from confusable_homoglyphs import confusables

    letters = set(string.ascii_letters)
    table: dict[str, str] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        latin = sorted({h["c"] for h in homoglyphs} & letters, key=lambda c: (c.isupper(), c))
        if latin:
            table[char] = latin[0]
    return table


def _script(char: str) -> str:
    """The script a letter belongs to, as the first word of its Unicode name (LATIN, CYRILLIC, GREEK, ...)."""
    return unicodedata.name(char, "").partition(" ")[0]


def fold_confusables(text: str) -> str:
    """``text`` with lookalike letters read as the Latin ones they pass for, word by word.

    A word that mixes Latin letters with lookalikes ("nudе" with a Cyrillic е) has its lookalikes
    folded. A word made only of lookalikes ("сосk" without its k) is folded too when it stands among
    Latin words and the text has no letter of its script that passes for nothing Latin: a Russian
    prompt ("горе", or "горе и море") is Russian, and "горе" stays "горе", not "rope". Other words, and
    every word of Japanese, Chinese or plain Latin text, stay as they are.
    """
    if text.isascii():
        return text
    lookalikes = _latin_lookalikes()
    real_scripts = {
        _script(ch) for ch in text if ch.isalpha() and not ch.isascii() and ch not in lookalikes
    }
    latin_context = any(ch in string.ascii_letters for ch in text)
    out: list[str] = []
    last = 0
    for match in _WORD.finditer(text):
        word = match.group()
        if word.isascii():
            continue
        if any(ch.isascii() for ch in word):  # mixed: Latin letters and others
            folded = "".join(lookalikes.get(ch, ch) for ch in word)
        elif latin_context and all(ch in lookalikes for ch in word) and not {_script(ch) for ch in word} & real_scripts:
            folded = "".join(lookalikes[ch] for ch in word)
        else:
            continue
        out.append(text[last : match.start()])
        out.append(folded)
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def _blocked_pattern(normalized: str) -> re.Pattern[str] | None:
    parts = normalized.split()
    if not parts:
        return None
    body = (_NOT_LETTER + "+").join(re.escape(part) for part in parts)
    return re.compile(_LETTER_BEFORE + body + _LETTER_AFTER)


def find_blocked_word(text: str, words: Iterable[str]) -> str | None:
    """The first of ``words`` found in ``text`` as a whole word, or None.

    Both sides are normalized (:func:`normalize_for_matching`); a word is bounded by anything
    that is not a letter, so "nudes" and "gorgeous" pass while "_nude_" and "nude2" do not.
    Words of a phrase match across any separators ("blood_bath" for "blood bath"). The text is
    matched as written and with its lookalike letters folded: "nudе" with a Cyrillic е is "nude",
    and a blocked word in Cyrillic is still found among Latin words.
    """
    visible = _visible(text)
    texts = {visible.casefold(), fold_confusables(visible).casefold()}
    for word in words:
        shown = _visible(word)
        for form in {shown.casefold(), fold_confusables(shown).casefold()}:
            pattern = _blocked_pattern(form)
            if pattern is not None and any(pattern.search(t) for t in texts):
                return word
    return None


def parse_word_list(text: str) -> tuple[str, ...]:
    """Words or phrases separated by commas or new lines: cleaned, lower-case, without repeats."""
    words: list[str] = []
    for part in re.split(r"[,\n]", text):
        word = clean_text(part).casefold()
        if not word:
            continue
        if len(word) > MAX_BLOCKED_WORD_CHARS:
            raise Refusal(f"{quoted(word, 20)} is longer than {MAX_BLOCKED_WORD_CHARS} characters.")
        if word not in words:
            words.append(word)
    if not words:
        raise Refusal("Give at least one word; separate several with commas.")
    return tuple(words)


def check_user_limits(
    *, waiting: int, recent: int, max_waiting: int, max_per_minute: int, next_position: int | None = None
) -> None:
    """Refuse a user over this server's limits: jobs waiting at once, jobs started in the last minute.

    ``next_position`` is where the user's first waiting job stands in the queue, told with a refusal.
    """
    if waiting >= max_waiting:
        place = f" Your next one is at position {next_position} in the queue." if next_position else ""
        raise Refusal(
            f"You already have {waiting} job{'s' if waiting != 1 else ''} waiting; this server allows "
            f"{max_waiting} at a time.{place} Wait for one to finish, or use /cancel."
        )
    if recent >= max_per_minute:
        raise Refusal(
            f"You started {recent} jobs in the last minute; this server allows {max_per_minute} per minute. "
            "Try again in a moment."
        )


# --------------------------------------------------------------------------- preferences (/prefer)

MAX_STYLE_SUFFIX_CHARS = 200  # room is left for the prompt: prompt + ", " + suffix must fit MAX_PROMPT_CHARS
STYLE_SEPARATOR = ", "


def check_style_suffix(suffix: object) -> str | None:
    """A style suffix for /prefer, cleaned and without leading commas; None when absent or blank.

    ``", watercolor"`` and ``"watercolor"`` are the same suffix: it is joined with ``", "``.
    """
    if suffix is None:
        return None
    if not isinstance(suffix, str):
        raise Refusal("The style suffix must be text.")
    cleaned = clean_text(clean_text(suffix).lstrip(",;").strip())
    if len(cleaned) > MAX_STYLE_SUFFIX_CHARS:
        raise Refusal(
            f"Your style suffix is {len(cleaned):,} characters long; the limit is {MAX_STYLE_SUFFIX_CHARS} "
            "(it is added to every prompt, which must stay within "
            f"{MAX_PROMPT_CHARS:,} characters)."
        )
    return cleaned or None


def with_style(prompt: str, suffix: str | None) -> str:
    """``prompt`` with the style suffix appended (``"a fox" + "watercolor"`` -> ``"a fox, watercolor"``).

    Unchanged when there is no suffix or the prompt already ends with it (a prompt copied from
    an earlier result). Refuses when the two together are longer than a prompt may be.
    """
    if not suffix:
        return prompt
    if prompt.casefold().rstrip(" ,;.").endswith(suffix.casefold()):
        return prompt
    styled = f"{prompt.rstrip(' ,;')}{STYLE_SEPARATOR}{suffix}"
    if len(styled) > MAX_PROMPT_CHARS:
        raise Refusal(
            f"Your prompt with your style suffix {quoted(suffix, 40)} is {len(styled):,} characters long; the limit is "
            f"{MAX_PROMPT_CHARS:,}. Shorten the prompt, or turn the suffix off with /prefer reset what:style."
        )
    return styled
