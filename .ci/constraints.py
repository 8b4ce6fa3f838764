#!/usr/bin/env python3
"""Print constraints.txt: the installed versions that `imagine-bot[test,safety,upscale]` needs, transitively.

Run with the tested .venv: `.venv/bin/python .ci/constraints.py > constraints.txt` (after the suite passed).
"""
import re
import sys
from importlib import metadata

from packaging.requirements import Requirement

PYTHON = "{}.{}".format(*sys.version_info[:2])
HEADER = f"""\
# The versions the test suite passed with (CPU, Python {PYTHON}): `pip freeze` of a tested .venv, kept to what
# `pip install -e ".[test,safety,upscale]"` needs (made by .ci/constraints.py). dev.sh installs with
# `-c constraints.txt`; pyproject.toml keeps the ranges the code accepts. Each pin applies on Python {PYTHON}
# only (several of these releases need it or newer; elsewhere pip resolves within pyproject.toml's ranges).
# torch and torchvision match what .ci/run installs first.
"""


def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
dists = {norm(d.metadata["Name"]): d for d in metadata.distributions()}
seen, todo = {}, [("imagine-bot", frozenset({"test", "safety", "upscale"}))]
while todo:
    name, extras = todo.pop()
    d = dists.get(norm(name))
    if d is None:
        continue
    key = norm(name)
    done_extras = seen.get(key)
    if done_extras is not None and extras <= done_extras:
        continue
    seen[key] = (done_extras or frozenset()) | extras
    for raw in d.requires or []:
        r = Requirement(raw)
        envs = [{"extra": e} for e in (extras or {""})] or [{"extra": ""}]
        if r.marker is not None and not any(r.marker.evaluate(env) for env in envs):
            continue
        todo.append((r.name, frozenset(r.extras)))
seen.pop("imagine-bot")
print(HEADER, end="")
for key in sorted(seen):
    print(f'{dists[key].metadata["Name"]}=={dists[key].version} ; python_version == "{PYTHON}"')
