"""``python -m benchmarks.fullsize``: every architecture built at random and run through the engine's own loading
code, recipes and add-ons. CI runs the whole run on the tiny preset's shapes and the full-size Turbo draft."""

from __future__ import annotations

import os

import pytest

from benchmarks import addon_weights, fullsize


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| row ")]


def test_every_row_runs_through_the_engine_on_tiny_shapes(tmp_path, capsys):
    out = tmp_path / "fullsize.md"
    rc = fullsize.main(["--arch", "tiny", "--size", "256", "--out", str(out), "--work-dir", str(tmp_path / "m")])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    rows = table_rows(out.read_text())
    assert len(rows) == len(fullsize.ROWS) and all("| ok |" in row for row in rows), printed
    assert "LoRA layers in text_encoder, text_encoder_2, unet" in printed
    assert "ESRGAN x4, 2x" in printed  # spandrel loaded the RRDBNet (Lanczos did not stand in)
    assert not (tmp_path / "m" / "turbo").exists()  # folders go once no later row needs them


def test_a_failing_row_prints_its_error_and_fails_the_run(tmp_path, capsys):
    (tmp_path / "esrgan").mkdir()
    (tmp_path / "esrgan" / "RealESRGAN_x4plus-random.safetensors").write_bytes(b"not a model")
    addon_keys = fullsize.addon_environment(tmp_path)
    environment = {key: os.environ.get(key) for key in addon_keys}
    rc = fullsize.main(["--arch", "tiny", "--rows", "upscale", "--size", "64", "--work-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert {key: os.environ.get(key) for key in addon_keys} == environment  # not LORA_DIR etc. for later tests
    assert rc == 1
    (row,) = table_rows(printed)
    assert "| FAILED |" in row and "upscaler" in row


def test_the_kohya_lora_has_sd_scripts_names_and_sdxl_shapes():
    layers = addon_weights.kohya_layers("full")
    # 70 transformer blocks x 10 linear layers + 11 proj_in/proj_out pairs; CLIP-L 12 and bigG 32 layers x 6
    assert len(layers) == 70 * 10 + 22 + 12 * 6 + 32 * 6
    assert layers["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"] == (640, 2048)
    assert layers["lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_0_proj"] == (10240, 1280)
    assert layers["lora_unet_middle_block_1_proj_in"] == (1280, 1280)
    assert layers["lora_unet_output_blocks_5_1_transformer_blocks_1_attn1_to_out_0"] == (640, 640)
    assert layers["lora_te1_text_model_encoder_layers_11_self_attn_q_proj"] == (768, 768)
    assert layers["lora_te2_text_model_encoder_layers_31_mlp_fc1"] == (5120, 1280)
    assert not any(name.startswith("lora_unet_output_blocks_6") for name in layers)  # the top level has no attention


@pytest.mark.slow
def test_the_full_size_turbo_draft_runs_in_bfloat16(tmp_path, capsys):
    """The published SDXL-Turbo architecture (2.6 B UNet parameters), built in bfloat16, saved, loaded by the
    engine with ENGINE_DTYPE=bfloat16 and drawn at 512 px, 1 step, in its own process: about 2-3 minutes."""
    out = tmp_path / "turbo.md"
    rc = fullsize.main(["--rows", "turbo", "--out", str(out), "--work-dir", str(tmp_path / "m")])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    (row,) = table_rows(out.read_text())
    assert "| ok |" in row and "turbo, 1 steps" in row
