"""Which wheels travel to the GPU machine, and the dry run's site folder: both follow from pyproject.toml.

The engine's packages are the project's dependencies (``pyproject.toml``) and what they require, as this
machine's virtual environment has them installed. The GPU image has its own packages
(``benchmarks/gpu-image-packages.txt``); what is not there travels as a wheel, at the version installed
here. A package the image has travels too when a carried package asks for a version of it that the image
may not have (the image's version is unknown here, or known and too old): pydantic wants a recent
typing-extensions, importlib-metadata a recent zipp, compel pyparsing 3.

    python benchmarks/wheels.py pins          # name==version per line: what fetch-wheels.sh downloads
    python benchmarks/wheels.py site DIR      # DIR holds links to the image's + carried packages only
    python benchmarks/wheels.py check DIR [NAME...]   # DIR's packages (or NAMEs) and the project find their needs

``site`` builds the dry run's site-packages (``bash benchmarks/gpu.sh --dry-run``) from this environment:
only the image's packages (and what this environment's newer versions of them require) plus the carried
ones, so an import of anything else fails here as it would on the GPU machine.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
IMAGE_FILE = Path(__file__).with_name("gpu-image-packages.txt")
# Project dependencies the engine and the benchmark never import (the bot's side): they stay behind.
NOT_CARRIED = {
    "discord-py": "the bot's Discord client (engine/ never imports it)",
    "aiosqlite": "the bot's history store (engine/ never imports it)",
}
# Optional dependency groups the GPU run exercises: the gpu-marked add-on test runs the ESRGAN upscaler.
CARRIED_EXTRAS = ("upscale",)
# The GPU machine: Python 3.12 on x86-64 Linux (markers of requirements are read for it).
TARGET = {
    "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "extra": "",
}
LOWER_BOUNDS = (">=", ">", "~=", "==", "===")
# What ../shared/notes/real-sizes.md says the image lacks (the dry run never borrows these from here).
NOT_ON_IMAGE = ("diffusers", "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types",
                "typing-inspection", "compel", "importlib-metadata", "discord-py", "aiosqlite")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = IMAGE_FILE) -> dict[str, str | None]:
    """The GPU image's packages: normalized name -> version (None where the list gives none)."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[norm(name)] = version or None
    return out


def project_requirements() -> list[Requirement]:
    """pyproject.toml's dependencies and those of the optional groups in ``CARRIED_EXTRAS``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in CARRIED_EXTRAS for r in project["optional-dependencies"][group]]
    return [Requirement(r) for r in project["dependencies"] + extras]


def _applies(req: Requirement) -> bool:
    return req.marker is None or req.marker.evaluate(dict(TARGET))


def _requires(name: str) -> list[Requirement]:
    return [r for r in map(Requirement, md.distribution(name).requires or []) if _applies(r)]


def _image_lacks(req: Requirement, version: str | None) -> bool:
    """A carried package's requirement on an image package: may the image's version fail it?"""
    if version is not None:
        return not req.specifier.contains(Version(version), prereleases=True)
    return any(spec.operator in LOWER_BOUNDS for spec in req.specifier)


def carried(image: dict[str, str | None] | None = None) -> dict[str, str]:
    """Normalized name -> version installed here, for every wheel the GPU machine needs."""
    image = image_packages() if image is None else image
    out: dict[str, str] = {}
    todo = [(r, False) for r in project_requirements() if norm(r.name) not in NOT_CARRIED]
    while todo:
        req, from_carried = todo.pop()
        name = norm(req.name)
        if name in out or not _applies(req):
            continue
        if name in image:
            known = image[name]
            # The project's own requirements on image packages: judged where the version is known (the
            # others gpu.sh checks on the machine); a carried package's: carried unless known to be met.
            if not (_image_lacks(req, known) if from_carried else known is not None and _image_lacks(req, known)):
                continue
        out[name] = md.version(name)
        todo += [(r, True) for r in _requires(name)]
    return dict(sorted(out.items()))


def image_closure(image: dict[str, str | None], skip: set[str]) -> set[str]:
    """The image's packages installed here, plus what these (possibly newer) versions require, minus ``skip``.

    The image's own versions bring their own needs there; here this environment's versions need theirs.
    """
    out: set[str] = set()
    todo = [name for name in image if _installed(name)]
    while todo:
        name = todo.pop()
        if name in out or name in skip or not _installed(name):
            continue
        out.add(name)
        todo += [norm(r.name) for r in _requires(name)]
    return out


def _installed(name: str) -> bool:
    try:
        md.distribution(name)
        return True
    except md.PackageNotFoundError:
        return False


def build_site(target: Path) -> dict[str, list[str]]:
    """Links in ``target`` to this environment's files of the allowed distributions; returns what was allowed."""
    image = image_packages()
    wheels = carried(image)
    absent = set(NOT_CARRIED) | set(NOT_ON_IMAGE)
    extra = image_closure(image, skip=absent | set(wheels)) - set(image)
    allowed = {n for n in image if _installed(n)} | set(wheels) | extra
    owners: dict[str, set[str]] = {}  # top-level entry (or first two levels of a shared folder) -> distributions
    files: dict[str, list[Path]] = {}
    for dist in md.distributions():
        name = norm(dist.metadata["Name"] or "")
        for f in dist.files or []:
            parts = Path(f).parts
            if not parts or parts[0] == ".." or parts[0] == "__pycache__" or parts[0].endswith(".pth"):
                continue
            owners.setdefault(parts[0], set()).add(name)
            files.setdefault(name, []).append(Path(f))
            base = Path(str(dist.locate_file(""))).resolve()
            files.setdefault(f"{name}@base", [base])
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(allowed):
        base = files.get(f"{name}@base", [None])[0]
        for f in files.get(name, []):
            parts = f.parts
            top = parts[0]
            if owners[top] <= allowed or len(parts) == 1:
                link, source = target / top, base / top
            else:  # a folder shared with a distribution that stays behind (a namespace package): one level down
                (target / top).mkdir(exist_ok=True)
                link, source = target / top / parts[1], base / top / parts[1]
            if not link.exists() and not link.is_symlink() and source.exists():
                link.symlink_to(source)
    return {"image": sorted(n for n in image if _installed(n)), "carried": sorted(wheels), "image_needs": sorted(extra)}


def check(site: Path, names: set[str] | None = None) -> list[str]:
    """What the distributions installed in ``site`` (those in ``names``, if given) and the project require and do
    not find here (missing, or a version outside the range)."""
    problems = []
    wanted = [(f"{d.metadata['Name']} {d.version}", d.requires or []) for d in md.distributions(path=[str(site)])
              if names is None or norm(d.metadata["Name"] or "") in names]
    wanted.append(("pyproject.toml", [str(r) for r in project_requirements() if norm(r.name) not in NOT_CARRIED]))
    for who, requires in wanted:
        for req in requires:
            r = Requirement(req)
            if not (r.marker is None or r.marker.evaluate({"extra": ""})):
                continue
            try:
                have = md.version(r.name)
            except md.PackageNotFoundError:
                problems.append(f"{who} needs {req}: not installed")
                continue
            if r.specifier and not r.specifier.contains(Version(have), prereleases=True):
                problems.append(f"{who} needs {req}: the machine has {have}")
    return problems


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "pins"
    if what == "pins":
        print("\n".join(f"{name}=={version}" for name, version in carried().items()))
    elif what == "site":
        allowed = build_site(Path(argv[1]))
        print(f"dry-run site {argv[1]}: {len(allowed['image'])} image packages, carried {allowed['carried']}, "
              f"what this environment's versions of image packages need besides: {allowed['image_needs']}")
    elif what == "check":
        problems = check(Path(argv[1]), {norm(n) for n in argv[2:]} or None)
        for p in problems:
            print(f"REQUIREMENT NOT MET: {p}")
        return 1 if problems else 0
    else:
        raise SystemExit(f"unknown command {what!r}: pins, site DIR or check DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
