"""The papers an owner reads: the licence, the tested versions (constraints.txt) and pyproject's ranges agree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            pins[requirement.name.lower().replace("_", "-")] = spec.version
    return pins


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in (*project["dependencies"], *extras["test"], *extras["safety"], *extras["upscale"])]


def test_constraints_pin_the_torch_that_ci_installs_first():
    ci = (ROOT / ".ci" / "run").read_text()
    pins = _pins()
    for name in ("torch", "torchvision"):
        assert f'"{name}=={pins[name]}"' in ci, name
    assert "-c constraints.txt" in (ROOT / "dev.sh").read_text()


def test_every_tested_version_is_inside_the_ranges_pyproject_accepts():
    pins = _pins()
    for requirement in _dependencies():
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is a dependency but constraints.txt does not pin it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, str(requirement.specifier))


def test_the_packages_that_break_most_have_upper_bounds():
    bounded = {r.name.lower(): r.specifier for r in _dependencies()}
    for name in ("diffusers", "transformers", "huggingface_hub"):
        assert any(spec.operator == "<" for spec in bounded[name]), name


def test_the_licence_file_is_the_mit_licence_pyproject_names():
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and re.search(r"Copyright \(c\) \d{4} the imagine-bot authors", text)
