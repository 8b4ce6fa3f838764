"""The line `python -m engine serve` prints for the bot's .env: a token the owner set never reaches stdout."""

from __future__ import annotations

import re

from engine.__main__ import bot_line

LINE = re.compile(r"ENGINE_BACKEND=ray ENGINE_URL=(\S+) ENGINE_TOKEN=(\S+)")  # as the cluster e2e test reads it


def test_a_token_serve_made_up_is_printed_once_in_the_line_scripts_read():
    match = LINE.fullmatch(bot_line("http://127.0.0.1:8000", "made-up-token-0123456789ab", generated=True))
    assert match and match.groups() == ("http://127.0.0.1:8000", "made-up-token-0123456789ab")


def test_a_token_the_owner_set_is_never_printed():
    line = bot_line("http://10.0.0.2:8000", "the-owners-secret", generated=False)
    assert "the-owners-secret" not in line
    assert line == "ENGINE_BACKEND=ray ENGINE_URL=http://10.0.0.2:8000 ENGINE_TOKEN=<set in the environment>"
