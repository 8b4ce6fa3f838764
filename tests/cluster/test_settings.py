"""Cluster settings (``python -m engine serve``) from the environment: defaults, the token, one-line errors."""

from __future__ import annotations

import pytest

from engine.cluster.settings import ClusterSettings
from engine.settings_base import SettingsError


def test_defaults_and_values():
    assert ClusterSettings.from_env({}) == ClusterSettings()
    settings = ClusterSettings.from_env(
        {
            "ENGINE_TOKEN": " s3cr3t ",
            "ENGINE_SERVE_HOST": "0.0.0.0",
            "ENGINE_SERVE_PORT": "9000",
            "RAY_ADDRESS": "auto",
            "ENGINE_DRAFT_REPLICAS": "2",
            "ENGINE_DRAFT_MAX_REPLICAS": "4",
            "ENGINE_FINAL_GPUS": "0.5",
            "ENGINE_BATCH_WAIT_MS": "0",
        }
    )
    assert settings.token.get_secret_value() == "s3cr3t" and "s3cr3t" not in repr(settings)
    assert (settings.host, settings.port, settings.address) == ("0.0.0.0", 9000, "auto")
    assert (settings.draft_replicas, settings.draft_max_replicas, settings.final_gpus) == (2, 4, 0.5)
    assert settings.draft_gpus == -1.0 and settings.batch_wait_ms == 0.0
    assert ClusterSettings().token.get_secret_value() == ""  # serve makes one up


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"ENGINE_SERVE_PORT": "0"}, "ENGINE_SERVE_PORT=0: use 1 to 65535."),
        ({"ENGINE_SERVE_PORT": "http"}, "ENGINE_SERVE_PORT='http' is not a valid whole number: use 1 to 65535."),
        ({"ENGINE_FINAL_REPLICAS": "0"}, "ENGINE_FINAL_REPLICAS=0: use at least 1."),
        (
            {"ENGINE_DRAFT_REPLICAS": "3", "ENGINE_DRAFT_MAX_REPLICAS": "2"},
            "ENGINE_DRAFT_MAX_REPLICAS=2: use 0 or at least ENGINE_DRAFT_REPLICAS (3).",
        ),
        ({"ENGINE_DRAFT_GPUS": "-0.5"}, "ENGINE_DRAFT_GPUS=-0.5: use 0 or more (or -1 for automatic)."),
        ({"ENGINE_REPLICA_CPUS": "-1"}, "ENGINE_REPLICA_CPUS=-1: use 0 or more."),
    ],
)
def test_a_bad_value_is_one_line_with_the_variable_and_the_fix(env, line):
    with pytest.raises(SettingsError) as info:
        ClusterSettings.from_env(env)
    assert str(info.value) == line


def test_command_line_changes_are_checked_too():
    settings = ClusterSettings.from_env({"ENGINE_DRAFT_MAX_REPLICAS": "4"})
    assert settings.replace(draft_replicas=2).draft_replicas == 2
    with pytest.raises(SettingsError, match="^ENGINE_DRAFT_MAX_REPLICAS=4: use 0 or at least"):
        settings.replace(draft_replicas=5)
