"""ENGINE_DTYPE: the engine runs in the dtype the settings name, also bfloat16 on the CPU (full-size SDXL in
float32 needs about 14 GB for Turbo alone; bfloat16 halves it)."""

from __future__ import annotations

import pytest
import torch

from engine.device import resolve_dtype
from engine.requests import DraftRequest
from engine.settings import EngineSettings
from engine.settings_base import SettingsError

from .conftest import pixels


def test_the_setting_is_read_in_any_case_and_auto_keeps_today():
    assert EngineSettings.from_env({"ENGINE_DTYPE": "BFloat16"}).dtype == "bfloat16"
    auto = EngineSettings.from_env({}).dtype
    assert (resolve_dtype(auto, "cpu"), resolve_dtype(auto, "cuda:0")) == (torch.float32, torch.float16)
    with pytest.raises(SettingsError, match="ENGINE_DTYPE"):
        EngineSettings.from_env({"ENGINE_DTYPE": "int8"})


def test_a_cpu_engine_set_to_bfloat16_loads_and_draws_in_bfloat16(make_engine):
    engine = make_engine(dtype="bfloat16")
    result = engine.submit(DraftRequest("a harbour at dawn", 7, width=256, height=256, count=1), user="u")
    image = pixels(result.future.result(timeout=120).images[0].png)
    assert image.shape == (256, 256, 3) and image.std() > 1.0
    turbo = engine.registry.get("turbo").text2img
    assert {turbo.unet.dtype, turbo.text_encoder.dtype, turbo.text_encoder_2.dtype, turbo.vae.dtype} == {torch.bfloat16}
    assert engine.registry.draft_decoder().dtype == torch.bfloat16
