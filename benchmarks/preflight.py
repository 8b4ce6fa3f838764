"""The GPU run's first step: every module the run will import, imported now, so a missing wheel costs seconds.

The list is read from the source, not written by hand: every ``import`` in ``engine/`` (but its Ray
cluster) and ``benchmarks/`` (but the cluster benchmark), module level or inside a function (the engine
imports compel, peft, the add-ons and most of diffusers lazily). Imports guarded by ``except
ImportError`` are optional (spandrel for the upscaler) and only reported. Run with the hub offline, as
the GPU machine is.

    python benchmarks/preflight.py         # exit 0: all found; 1: one line per missing module
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}
# Not the benchmark's: the Ray Serve cluster (its own machines have the ray extra) and its benchmark.
SKIP = ("engine/cluster/", "benchmarks/cluster_bench.py", "engine/__main__.py", "benchmarks/preflight.py")
SOURCES = ("engine", "benchmarks")


def set_offline() -> None:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)


def _guarded(tree: ast.AST) -> set[int]:
    """ids of import nodes inside a ``try`` whose handlers catch ImportError, or in those handlers (optional
    imports and their fallbacks)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            names = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if any("ImportError" in n or "ModuleNotFoundError" in n for n in names):
                body = node.body + [stmt for h in node.handlers for stmt in h.body]  # the try and its fallback
                out |= {id(n) for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)}
    return out


def wanted_imports() -> list[tuple[str, str | None, str, bool]]:
    """(module, attribute or None, where, optional) for every import statement of the run's sources."""
    out = []
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(SKIP):
                continue
            tree = ast.parse(path.read_text(), rel)
            optional = _guarded(tree)
            package = rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            if not rel.endswith("__init__.py"):
                package = package.rpartition(".")[0]
            for node in ast.walk(tree):
                where = f"{rel}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.Import):
                    out += [(a.name, None, where, id(node) in optional) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    base = node.module or ""
                    if node.level:
                        parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                        base = ".".join(parent + ([base] if base else []))
                    out += [(base, a.name, where, id(node) in optional) for a in node.names if a.name != "*"]
    return out


def engine_modules() -> list[str]:
    import engine

    return sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")
                  if not m.name.startswith("engine.cluster") and not m.name.endswith("__main__"))


def check(verbose: bool = True) -> list[str]:
    """Import everything; returns one line per missing module (empty: all there)."""
    set_offline()
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    started = time.perf_counter()
    missing: list[str] = []
    optional_missing: list[str] = []
    seen: set[tuple[str, str | None]] = set()
    todo = [(m, None, "engine package", False) for m in engine_modules()] + wanted_imports()
    for module, attr, where, optional in todo:
        if (module, attr) in seen:
            continue
        seen.add((module, attr))
        try:
            mod = importlib.import_module(module)
            if attr is not None and not hasattr(mod, attr):
                importlib.import_module(f"{module}.{attr}")  # a submodule (from package import submodule)
        except ImportError as exc:
            what = getattr(exc, "name", None) or module
            line = f"{module}{'.' + attr if attr else ''} ({where}): {exc.__class__.__name__}: {what}"
            (optional_missing if optional else missing).append(line)
        except Exception as exc:  # an import that runs and fails is as fatal as a missing one
            missing.append(f"{module} ({where}): {exc.__class__.__name__}: {exc}")
    if verbose:
        import torch

        versions = []
        for name in ("torch", "diffusers", "transformers", "accelerate", "peft", "compel", "pydantic",
                     "pydantic_settings", "huggingface_hub", "PIL"):
            mod = sys.modules.get(name)
            versions.append(f"{name} {getattr(mod, '__version__', '?') if mod else 'not imported'}")
        print(f"preflight: {len(seen)} imports in {time.perf_counter() - started:.1f} s; "
              f"python {sys.version.split()[0]}; cuda {torch.cuda.is_available()}; " + ", ".join(versions), flush=True)
        for line in optional_missing:
            print(f"preflight: optional, absent: {line}", flush=True)
    return missing


def main() -> int:
    missing = check()
    for line in missing:
        print(f"MISSING IMPORT: {line}: carry its wheel (benchmarks/wheels.py, fetch-wheels.sh)", flush=True)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
