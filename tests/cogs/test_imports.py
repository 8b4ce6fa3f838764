"""cogs/ never imports torch, diffusers or transformers, directly or through engine.worker."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers", "engine.worker")


def test_cogs_and_the_bot_side_stay_light():
    code = (
        "import sys\n"
        "import cogs.imagine, cogs.history, cogs.queue, cogs.admin, cogs.channels, cogs.options, cogs.prefs\n"
        "import core.jobs, core.delivery, core.controls, core.tree, core.settings, core.limits, core.render\n"
        "import bot\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_no_cog_imports_them_by_name():
    """Also catches imports inside functions, which the subprocess test would not run."""
    for path in (ROOT / "cogs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(HEAVY), f"{path.name} imports {name}"
