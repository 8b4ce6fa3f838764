"""Bot settings from the environment, and pointing discord.py at another REST/gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from core.settings import TOKEN_HELP, BotSettings, SettingsError, apply_endpoints

ROOT = Path(__file__).resolve().parents[2]


def test_defaults():
    settings = BotSettings.from_env({"DISCORD_TOKEN": " abc "})
    assert settings.token == "abc" and settings.guild_id is None
    assert settings.database_path == Path("data/history.sqlite3")
    assert "abc" not in repr(settings)


def test_missing_token_says_how_to_get_one():
    with pytest.raises(SettingsError) as info:
        BotSettings.from_env({"DISCORD_TOKEN": "  "})
    assert str(info.value) == TOKEN_HELP
    assert "Reset Token" in TOKEN_HELP and "\n" not in TOKEN_HELP


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DISCORD_GUILD_ID": "my server"}, "DISCORD_GUILD_ID"),
        ({"DISCORD_API_BASE": "discord.com"}, "http://"),
        ({"DISCORD_GATEWAY_URL": "http://x"}, "ws://"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"DISCORD_MESSAGE_CONTENT": "maybe"}, "true or false"),
        ({"DRAFT_SIZE": "500"}, "multiple of 64"),
        ({"SHUTDOWN_TIMEOUT": "soon"}, "not a valid number"),
        ({"ENGINE_BACKEND": "cuda"}, "ENGINE_BACKEND='cuda': use local"),
        ({"ENGINE_BACKEND": "ray"}, "ENGINE_BACKEND=ray needs ENGINE_URL"),
        ({"ENGINE_BACKEND": "ray", "ENGINE_URL": "127.0.0.1:8000"}, "ENGINE_URL='127.0.0.1:8000' must start with"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        BotSettings.from_env({"DISCORD_TOKEN": "t", **env})


def test_all_values():
    settings = BotSettings.from_env(
        {
            "DISCORD_TOKEN": "t",
            "DISCORD_GUILD_ID": "123",
            "DATABASE_PATH": "/tmp/x.sqlite3",
            "DISCORD_API_BASE": "http://127.0.0.1:5000/api/v10/",
            "DISCORD_GATEWAY_URL": "ws://127.0.0.1:5000/gateway",
            "LOG_LEVEL": "debug",
            "DISCORD_MESSAGE_CONTENT": "false",
            "DRAFT_SIZE": "256",
            "SHUTDOWN_TIMEOUT": "5",
        }
    )
    assert settings.guild_id == 123 and settings.api_base == "http://127.0.0.1:5000/api/v10"
    assert settings.log_level == "DEBUG" and not settings.message_content and settings.draft_size == 256
    assert settings.shutdown_timeout == 5.0


def test_the_engine_is_local_unless_a_cluster_is_named():
    assert BotSettings.from_env({"DISCORD_TOKEN": "t"}).engine_backend == "local"
    ray = BotSettings.from_env(
        {"DISCORD_TOKEN": "t", "ENGINE_BACKEND": "Ray", "ENGINE_URL": "http://10.0.0.5:8000/", "ENGINE_TOKEN": "s3"}
    )
    assert (ray.engine_backend, ray.engine_url, ray.engine_token) == ("ray", "http://10.0.0.5:8000", "s3")
    assert "s3" not in repr(ray)


def test_ray_without_the_cluster_client_exits_2_with_one_line(tmp_path):
    # As where the [ray] extra is not installed: importing ray (or the cluster client) fails.
    code = (
        "import sys\n"
        "class NoRay:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'ray' or name.startswith(('ray.', 'engine.cluster')):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoRay())\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import bot\n"
        "sys.exit(bot.main())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "ENGINE_"))}
    env.update(DISCORD_TOKEN="t", ENGINE_BACKEND="ray", ENGINE_URL="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: ENGINE_BACKEND=ray needs the cluster client: pip install -e '.[ray]'"
    ]


def test_apply_endpoints(monkeypatch):
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    )
    apply_endpoints(BotSettings(token="t", api_base="http://127.0.0.1:9/api/v10", gateway_url="ws://127.0.0.1:9/gw"))
    assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:9/api/v10/users/@me"
    assert discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("ws://127.0.0.1:9/gw")


def test_bot_without_token_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCORD_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {TOKEN_HELP}"]
    assert done.stdout == ""


def test_image_retention_and_disk_cap():
    settings = BotSettings.from_env({"DISCORD_TOKEN": "t", "IMAGE_RETENTION_DAYS": "7", "IMAGE_STORE_MAX_MB": "0"})
    assert (settings.image_retention_days, settings.image_store_max_mb) == (7.0, 0)
    assert (BotSettings(token="t").image_retention_days, BotSettings(token="t").image_store_max_mb) == (30.0, 2048)
    with pytest.raises(SettingsError, match="IMAGE_STORE_MAX_MB"):
        BotSettings.from_env({"DISCORD_TOKEN": "t", "IMAGE_STORE_MAX_MB": "-1"})


def test_max_permutations():
    assert BotSettings.from_env({"DISCORD_TOKEN": "t"}).max_permutations == 4
    assert BotSettings.from_env({"DISCORD_TOKEN": "t", "MAX_PERMUTATIONS": "9"}).max_permutations == 9
    with pytest.raises(SettingsError, match="MAX_PERMUTATIONS"):
        BotSettings.from_env({"DISCORD_TOKEN": "t", "MAX_PERMUTATIONS": "0"})
