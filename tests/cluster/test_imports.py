"""The bot's side of the cluster engine needs neither Ray nor torch; only engine/cluster imports Ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cluster_client_loads_without_ray_or_torch():
    code = (
        "import sys\n"
        "import engine.api, engine.cluster.client, engine.cluster.wire, engine.cluster.settings\n"
        "heavy = [m for m in ('ray', 'torch', 'diffusers', 'engine.worker') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_only_engine_cluster_imports_ray_at_module_level():
    for path in ROOT.glob("**/*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in (".venv", "tests", "benchmarks") or relative.parts[:2] == ("engine", "cluster"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: `serve` imports Ray inside its function
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "ray" or n.startswith("ray.") for n in names), f"{relative} imports Ray"
