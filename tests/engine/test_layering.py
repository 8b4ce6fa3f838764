"""engine/ knows nothing of Discord or the history store; its request types stay torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOREIGN = ("discord", "aiosqlite", "core", "cogs", "bot")


def test_engine_never_imports_the_bot_side():
    """Every module of the package: the top level, addons, cluster and recipes."""
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FOREIGN, f"{path.relative_to(ROOT)} imports {name}"


def test_the_door_and_the_request_types_load_without_torch():
    code = (
        "import sys\n"
        "import engine.api, engine.local, engine.requests, engine.output, engine.canvas, engine.settings\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
