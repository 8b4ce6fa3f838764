"""The GPU script rehearsed on the CPU (issue 19): the whole of benchmarks/gpu.sh with the tiny architectures, in
an environment holding only the GPU image's packages and the carried wheels, so a wheel missing from
fetch-wheels.sh fails here and not on the lent machine."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import preflight, wheels

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("Stock diffusers", "Engine start", "Full-size correctness", "Engine drafts", "SSD-1B final",
            "Restart to first draft", "Offload", "SDXL base + refiner", "torch.compile")
# What the engine needs and the GPU image lacks (issue 19's list).
MUST_CARRY = {"diffusers", "importlib-metadata", "compel", "pydantic", "pydantic-core", "pydantic-settings",
              "python-dotenv", "annotated-types", "typing-inspection"}


@pytest.mark.slow
def test_dry_run_writes_every_table_with_imports_limited_to_the_gpu_image(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, BENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "pytest.txt", "rows.jsonl", "rows.md", "run.log"]
    records = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    sections = [r for r in records if "row" not in r]
    rows = [r for r in records if "row" in r]
    assert [next(s for s in SECTIONS if r["section"].startswith(s)) for r in sections] == list(SECTIONS)
    assert not any(s["note"].startswith("skipped") for s in sections), sections
    assert not [r for r in rows if r["error"]], [r for r in rows if r["error"]]
    table = (out / "rows.md").read_text()
    assert table.count("| row | value | stock | engine/stock |") == len(SECTIONS)
    names = {r["row"] for r in rows}
    assert "draft, 1 image, a NEW prompt each run (no cache hit)" in names
    stages = next(r for r in rows if r["row"] == "stages: drafts, 4 images (cached prompt)")
    assert all(f"{s} " in stages["note"] for s in ("text", "unet", "decode", "encode")), stages
    assert all(r["value"] is not None for r in rows), [r for r in rows if r["value"] is None]
    # Engine rows are divided by the one stock measurement.
    assert next(r for r in rows if r["row"] == "drafts, 4 images in one request")["ratio"] is not None
    # The gpu-marked tests were collected (their imports resolved) and skipped on the CPU.
    assert "skipped" in (out / "pytest.txt").read_text() and "error" not in (out / "pytest.txt").read_text().lower()
    assert "preflight:" in (out / "run.log").read_text()


def _dry_site(tmp_path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "wheels.py"), "site", site], check=True,
                   capture_output=True)
    return python


@pytest.mark.slow
def test_the_dry_run_environment_lacks_what_the_gpu_image_lacks_and_preflight_names_a_missing_wheel(tmp_path):
    python = _dry_site(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    # This environment has discord.py, aiosqlite and pytest-asyncio; the dry run's has none of them, but the wheels.
    names = ("discord", "aiosqlite", "pytest_asyncio", "compel", "pydantic_settings", "diffusers", "dotenv")
    found = run("-c", f"import importlib.util as u; print([n for n in {names!r} if u.find_spec(n)])")
    assert found.stdout.strip() == "['compel', 'pydantic_settings', 'diffusers', 'dotenv']", found
    # Without compel's wheel, preflight stops the run and says which import of the engine needs it.
    where = run("-c", "import importlib.util as u; print(u.find_spec('compel').submodule_search_locations[0])")
    Path(where.stdout.strip()).unlink()  # the link to this environment's compel
    proc = run("benchmarks/preflight.py")
    assert proc.returncode == 1
    assert "MISSING IMPORT: compel" in proc.stdout and "engine/prompts.py" in proc.stdout, proc.stdout


def test_the_carried_wheels_cover_every_package_the_engine_and_benchmark_import():
    image = wheels.image_packages()
    carried = wheels.carried(image)
    assert MUST_CARRY <= set(carried), sorted(carried)
    assert not set(wheels.NOT_CARRIED) & set(carried)
    assert not set(wheels.NOT_ON_IMAGE) & set(image)
    # Pinned to what this environment runs (the versions the CPU tests pass with).
    assert all(md.version(name) == version for name, version in carried.items())
    # Every third-party module imported by engine/ and benchmarks/ (lazy imports too) comes from the image or a
    # wheel, not from this environment alone (discord.py, aiosqlite, pytest-asyncio, ray...).
    owners = md.packages_distributions()
    local = {"engine", "benchmarks"}
    tops = {m.split(".")[0] for m, _, _, optional in preflight.wanted_imports() if not optional}
    third_party = sorted(t for t in tops if t not in local and t not in sys.stdlib_module_names)
    assert "compel" in third_party and "pydantic_settings" in third_party
    for top in third_party:
        dists = {wheels.norm(d) for d in owners.get(top, [])}
        assert dists & (set(image) | set(carried)), (top, dists)


def test_a_carried_package_brings_what_it_needs_unless_the_image_is_known_to_have_it():
    image = {"typing-extensions": None, "zipp": "3.23.0", "transformers": "5.17.0", "torch": "2.11.0"}
    from packaging.requirements import Requirement

    assert wheels._image_lacks(Requirement("typing-extensions>=4.16.0"), None)  # version unknown: carry it
    assert not wheels._image_lacks(Requirement("zipp>=3.20"), image["zipp"])  # known and new enough
    assert wheels._image_lacks(Requirement("transformers<6,>=5.20"), image["transformers"])  # known, too old
    assert not wheels._image_lacks(Requirement("regex!=2019.12.17"), None)  # no lower bound: the image's will do
    assert not wheels._image_lacks(Requirement("torch"), image["torch"])
