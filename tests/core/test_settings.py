"""Bot settings from the environment, and pointing discord.py at another REST/gateway."""

from __future__ import annotations

import logging
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
    assert settings.token.get_secret_value() == "abc" and settings.guild_id is None
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


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DRAFT_SIZE": "500"}, "DRAFT_SIZE=500: use a multiple of 64 from 256 to 1024."),
        ({"FINAL_SIZE": "4096"}, "FINAL_SIZE=4096: use a multiple of 64 from 512 to 2048."),
        ({"PROGRESS_INTERVAL": "0.1"}, "PROGRESS_INTERVAL=0.1: use 0.2 to 60 seconds."),
        ({"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT='soon' is not a valid number: use 0 to 3600 seconds."),
        (
            {"IMAGE_STORE_MAX_MB": "x"},
            "IMAGE_STORE_MAX_MB='x' is not a valid whole number: use 0 (no cap) or more MiB.",
        ),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': use one of DEBUG, INFO, WARNING, ERROR."),
        ({"DISCORD_SYNC_COMMANDS": "maybe"}, "DISCORD_SYNC_COMMANDS='maybe': use true or false."),
        ({"DISCORD_GUILD_ID": "-5"}, "DISCORD_GUILD_ID=-5: use a server id (turn on Developer Mode, "
         "right-click the server -> Copy Server ID), or leave it empty for global commands."),
    ],
)
def test_a_bad_value_is_one_line_with_the_variable_the_value_and_the_fix(env, line):
    with pytest.raises(SettingsError) as info:
        BotSettings.from_env({"DISCORD_TOKEN": "t", **env})
    assert str(info.value) == line


def test_the_first_bad_value_is_the_one_reported():
    with pytest.raises(SettingsError, match=r"^DRAFT_SIZE=1: .*\.$"):
        BotSettings.from_env({"DISCORD_TOKEN": "t", "DRAFT_SIZE": "1", "FINAL_SIZE": "1"})


def test_the_tokens_stay_out_of_repr_str_dumps_and_logs(caplog):
    env = {"DISCORD_TOKEN": "discord-secret", "ENGINE_TOKEN": "s3cr3t"}
    settings = BotSettings.from_env({**env, "ENGINE_BACKEND": "ray", "ENGINE_URL": "http://h:1"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    shown = [repr(settings), str(settings), f"{settings}", settings.model_dump_json(), caplog.text]
    for text in shown:
        assert "discord-secret" not in text and "s3cr3t" not in text, text
    assert "**********" in caplog.text  # the fields are there, masked
    assert settings.token.get_secret_value() == "discord-secret"


def test_dotenv_values_are_read_and_the_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "# a comment\nDISCORD_TOKEN=from-the-file\nDRAFT_SIZE=768\nLOG_LEVEL=debug\nDISCORD_GUILD_ID=\n"
        "ENGINE_PRESET=tiny\nHF_TOKEN=not-a-setting\n",  # the engine's, and others': not the bot's business
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    for name in ("DISCORD_TOKEN", "DRAFT_SIZE", "DISCORD_GUILD_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOG_LEVEL", "warning")
    settings = BotSettings.from_env()
    assert settings.token.get_secret_value() == "from-the-file" and settings.draft_size == 768
    assert settings.log_level == "WARNING" and settings.guild_id is None
    (tmp_path / ".env").write_text("DRAFT_SIZE=700\n", encoding="utf-8")
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    with pytest.raises(SettingsError, match="^DRAFT_SIZE=700: use a multiple of 64"):
        BotSettings.from_env()


def test_a_mapping_is_read_alone(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DRAFT_SIZE=768\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINAL_SIZE", "512")
    settings = BotSettings.from_env({"DISCORD_TOKEN": "t"})
    assert (settings.draft_size, settings.final_size) == (512, 1024)


def test_replace_checks_like_from_env():
    settings = BotSettings(token="t")
    assert settings.replace(draft_size=768).draft_size == 768 and settings.draft_size == 512
    with pytest.raises(SettingsError, match="^DRAFT_SIZE=700: "):
        settings.replace(draft_size=700)


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
    assert (ray.engine_backend, ray.engine_url) == ("ray", "http://10.0.0.5:8000")
    assert ray.engine_token is not None and ray.engine_token.get_secret_value() == "s3"
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


def test_a_bad_engine_setting_exits_2_with_its_one_line(tmp_path):
    # The bot's and the engine's settings fail with the one SettingsError, which bot.py turns into one line.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "ENGINE_"))}
    env.update(DISCORD_TOKEN="t", DRAFT_STEPS="9")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bot.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["error: DRAFT_STEPS=9: use 1 to 4."]


def test_max_permutations():
    assert BotSettings.from_env({"DISCORD_TOKEN": "t"}).max_permutations == 4
    assert BotSettings.from_env({"DISCORD_TOKEN": "t", "MAX_PERMUTATIONS": "9"}).max_permutations == 9
    with pytest.raises(SettingsError, match="MAX_PERMUTATIONS"):
        BotSettings.from_env({"DISCORD_TOKEN": "t", "MAX_PERMUTATIONS": "0"})
