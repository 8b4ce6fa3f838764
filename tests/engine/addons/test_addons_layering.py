"""What the bot side needs of engine/addons loads without torch (its imports: tests/engine/test_layering.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


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
