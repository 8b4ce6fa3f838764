"""engine/addons stays on the engine's side, and what the bot side needs of it loads without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FOREIGN = ("discord", "aiosqlite", "core", "cogs", "bot")


def test_addons_never_import_the_bot_side():
    for path in (ROOT / "engine" / "addons").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FOREIGN, f"engine/addons/{path.name} imports {name}"


def test_settings_names_and_start_up_check_load_without_torch(addon_settings):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from engine.addons import addon_problems\n"
        "from engine.addons.settings import AddonSettings\n"
        "from engine.addons.lora import LoraLibrary\n"
        "import engine.addons.reference, engine.addons.upscale, engine.addons.describe\n"
        f"settings = AddonSettings.for_tiny(Path({str(addon_settings.cache_dir)!r}))\n"
        "assert addon_problems(settings) == {}\n"
        "assert LoraLibrary(settings).complete('tiny') == ['tiny-glow', 'tiny-ink']\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
