"""Settings of the cluster side (``python -m engine serve``), read from the environment and ``.env``. Ray-free.

Every variable here is documented in `.env.example` (section "Cluster engine").
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from ..settings_base import EnvSettings, SettingsError


class ClusterSettings(EnvSettings):
    # The shared secret; empty: ``serve`` makes one up and prints it.
    token: SecretStr = Field(default=SecretStr(""), validation_alias="ENGINE_TOKEN")
    # Where Serve's HTTP proxy listens; loopback unless told otherwise.
    host: str = Field(default="127.0.0.1", validation_alias="ENGINE_SERVE_HOST")
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="ENGINE_SERVE_PORT", description="1 to 65535")
    # A running Ray cluster ("auto", "10.0.0.5:6379"); empty: find one or start one here.
    address: str = Field(default="", validation_alias="RAY_ADDRESS")
    draft_replicas: int = Field(default=1, ge=1, validation_alias="ENGINE_DRAFT_REPLICAS", description="at least 1")
    # Above draft_replicas: autoscale between the two; 0 = no autoscaling.
    draft_max_replicas: int = Field(
        default=0, ge=0, validation_alias="ENGINE_DRAFT_MAX_REPLICAS", description="0 or at least ENGINE_DRAFT_REPLICAS"
    )
    final_replicas: int = Field(default=1, ge=1, validation_alias="ENGINE_FINAL_REPLICAS", description="at least 1")
    final_max_replicas: int = Field(
        default=0, ge=0, validation_alias="ENGINE_FINAL_MAX_REPLICAS", description="0 or at least ENGINE_FINAL_REPLICAS"
    )
    # GPUs per replica (fractions share a GPU); -1 = 0.5 if the cluster has GPUs, else 0.
    draft_gpus: float = Field(
        default=-1.0, validation_alias="ENGINE_DRAFT_GPUS", description="0 or more (or -1 for automatic)"
    )
    final_gpus: float = Field(
        default=-1.0, validation_alias="ENGINE_FINAL_GPUS", description="0 or more (or -1 for automatic)"
    )
    replica_cpus: float = Field(default=1.0, ge=0.0, validation_alias="ENGINE_REPLICA_CPUS", description="0 or more")
    # How long a draft batch waits for more drafts to join.
    batch_wait_ms: float = Field(default=5.0, ge=0.0, validation_alias="ENGINE_BATCH_WAIT_MS", description="0 or more")

    @field_validator("draft_gpus", "final_gpus")
    @classmethod
    def _gpus(cls, value: float) -> float:
        if value != -1.0 and value < 0:
            raise ValueError("a share of GPUs is 0 or more, or -1")  # the line says what to use (description)
        return value

    @model_validator(mode="after")
    def _max_above_count(self) -> ClusterSettings:
        for kind, count, most in (
            ("DRAFT", self.draft_replicas, self.draft_max_replicas),
            ("FINAL", self.final_replicas, self.final_max_replicas),
        ):
            if most and most < count:
                raise SettingsError(
                    f"ENGINE_{kind}_MAX_REPLICAS={most}: use 0 or at least ENGINE_{kind}_REPLICAS ({count})."
                )
        return self
