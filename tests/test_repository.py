"""What the repository keeps out of git: local secrets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_env_files_are_ignored_but_the_example_is_not():
    for secret in (".env", ".env.local", ".env.production", ".env.bot2"):
        assert ignored(secret), secret
    assert not ignored(".env.example")
