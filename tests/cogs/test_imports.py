"""The bot side stays light and goes through the door.

cogs/ and core/ never import torch, diffusers or transformers (directly or through engine.worker),
and from the engine package they import ``engine.api`` only: the door both engines stand behind.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers", "engine.worker")
BOT_SIDE = ("cogs", "core")
DOOR = "engine.api"


def imported_names(path: Path) -> list[str]:
    """Every module an ``import`` in ``path`` names (inside functions too), absolute and relative."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names] + [node.module or ""]
    return names


def bot_side_files() -> list[Path]:
    return sorted(path for package in BOT_SIDE for path in (ROOT / package).rglob("*.py"))


def test_cogs_and_the_bot_side_stay_light():
    code = (
        "import sys\n"
        "import cogs.imagine, cogs.history, cogs.queue, cogs.admin, cogs.channels, cogs.options, cogs.prefs\n"
        "import core.jobs, core.delivery, core.controls, core.tree, core.settings, core.limits, core.render\n"
        "import cogs.ui.buttons, cogs.ui.layout, cogs.ui.remix\n"
        "import core.canvas, core.uploads\n"
        "import bot\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def violations(path: Path) -> list[str]:
    """The imports in ``path`` that break the rules of the bot side."""
    found = []
    for name in imported_names(path):
        if name.startswith(HEAVY):
            found.append(f"{name} (heavy)")
        elif (name == "engine" or name.startswith("engine.")) and not (name == DOOR or name.startswith(DOOR + ".")):
            found.append(f"{name} (the bot side may import {DOOR} only)")
    return found


@pytest.mark.parametrize("path", bot_side_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_bot_side_reaches_the_engine_only_through_the_door(path):
    """Also catches imports inside functions, which the subprocess test would not run."""
    assert violations(path) == [], path.relative_to(ROOT)


def test_the_rule_catches_a_way_round_the_door(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "from engine.api import DraftRequest\nfrom engine import canvas\n\n"
        "def f():\n    from engine.settings import EngineSettings\n    import torch\n"
    )
    assert violations(sneaky) == [
        "engine.canvas (the bot side may import engine.api only)",
        "engine (the bot side may import engine.api only)",
        "engine.settings.EngineSettings (the bot side may import engine.api only)",
        "engine.settings (the bot side may import engine.api only)",
        "torch (heavy)",
    ]
