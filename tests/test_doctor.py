"""``python bot.py --check``: what it asks Discord (a good and a refused token, the intent, the invite URL) and
what it finds on this machine (torch, device, weights, disk), before any download."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from core.doctor import discord_findings
from core.settings import BotSettings
from engine.doctor import machine_findings
from engine.settings import EngineSettings
from tests.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parent.parent


def _settings(**more) -> BotSettings:
    return BotSettings.model_construct(token=SecretStr("fake-token"), **more)


async def test_a_good_token_reports_the_bot_the_invite_url_and_what_is_missing_in_the_portal():
    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            findings = await discord_findings(_settings())
            problems = [f.text for f in findings if f.problem]
            texts = [f.text for f in findings]
            app_id = fake.application_id
        assert texts[0].startswith("token accepted") and f"application id {app_id}" in texts[0]
        invite = f"invite URL: https://discord.com/oauth2/authorize?client_id={app_id}"
        assert any(t.startswith(invite) for t in texts)
        assert problems == [next(t for t in texts if "Message Content intent is off" in t)]  # the fake's flags: 0
        assert any("public and ALLOWED_GUILDS is empty" in t for t in texts)
        fake.assert_no_errors()


async def test_a_refused_token_is_one_problem():
    async with FakeDiscord() as fake:
        with fake.patched_discord_py():
            fake.fail_next("GET", r"^/users/@me$", status=401)
            findings = await discord_findings(_settings(message_content=False))
    assert [(f.problem, f.text.split(":")[0]) for f in findings] == [(True, "Discord refused DISCORD_TOKEN")]


def test_the_machine_on_the_tiny_preset_needs_no_weights():
    findings = machine_findings(EngineSettings.from_env({"ENGINE_PRESET": "tiny", "ENGINE_DEVICE": "cpu"}))
    texts = [f.text for f in findings]
    assert texts[0].startswith("torch ") and "CUDA build" in texts[0]
    assert "device: cpu (ENGINE_PRESET=tiny)" in texts and not any(f.problem for f in findings)
    assert texts[-1].startswith("weights: none needed")


def test_missing_weights_against_a_full_disk_are_a_problem(tmp_path, monkeypatch):
    import engine.doctor as doctor

    settings = EngineSettings.from_env({"ENGINE_DEVICE": "cpu", "TURBO_MODEL": str(tmp_path / "no-turbo")})
    monkeypatch.setattr(doctor, "missing_models", lambda s, names: ["turbo", "ssd-1b"])
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: SimpleNamespace(free=5e9))
    findings = machine_findings(settings, cache=tmp_path / "hub")
    texts = [f.text for f in findings]
    assert any("no CUDA GPU" in t for t in texts)  # the real models on a CPU: said, not refused
    assert f"weights to download at the first start: turbo, ssd-1b, about 11.4 GB into {tmp_path}" in texts
    problems = [f.text for f in findings if f.problem]
    assert problems == [f"not enough disk for the download: 5.0 GB free at {tmp_path}, about 13.4 GB needed "
                        "(set HF_HOME to a bigger disk)"]
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: SimpleNamespace(free=50e9))
    assert not any(f.problem for f in machine_findings(settings, cache=tmp_path / "hub"))


async def _check(fake: FakeDiscord, tmp_path: Path, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "ENGINE_", "DATABASE_"))}
    clean.update(DISCORD_TOKEN="fake-token", DISCORD_API_BASE=fake.api_base, ENGINE_PRESET="tiny",
                 ENGINE_DEVICE="cpu", DATABASE_PATH=str(tmp_path / "history.sqlite3"), **env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bot.py"), "--check", cwd=tmp_path, env=clean,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode()


@pytest.mark.slow
async def test_bot_check_exits_0_when_the_bot_can_start_and_2_with_one_line_per_problem(tmp_path):
    async with FakeDiscord() as fake:
        code, out = await _check(fake, tmp_path, DISCORD_MESSAGE_CONTENT="false")
        assert code == 0, out
        assert "token accepted" in out and "weights: none needed" in out and "problem:" not in out
        assert not fake.calls_to("GET", r"/gateway")  # a login-only call: no gateway, no bot start
        fake.fail_next("GET", r"^/users/@me$", status=401)
        code, out = await _check(fake, tmp_path)
        assert code == 2, out
        assert [line for line in out.splitlines() if line.startswith("problem:")] == [
            "problem: Discord refused DISCORD_TOKEN: reset it at https://discord.com/developers/applications -> "
            "your app -> Bot -> Reset Token, and put the new one in .env"
        ]
        assert not (tmp_path / "history.sqlite3").exists()  # nothing created
