"""Groundwork for #22 item 3 (any SDXL checkpoint): a tiny single-file checkpoint in the original SDXL key
layout loads offline with ``from_single_file`` and a local config folder, every weight as it was written.

The engine does not offer checkpoints yet; these tests pin down the loading recipe it will use.
"""

from __future__ import annotations

import pytest
import torch

from engine.tiny import ensure_tiny_models
from tests.engine.ldm_layout import widen_second_encoder, write_original_checkpoint


@pytest.fixture(scope="module")
def sdxl_folder(tiny_cache_dir, tmp_path_factory):
    # The tiny Turbo folder has SDXL's components; its second text encoder is widened to SDXL's shape.
    turbo = ensure_tiny_models(tiny_cache_dir) / "turbo"
    return widen_second_encoder(turbo, tmp_path_factory.mktemp("ckpt") / "sdxl")


def test_original_layout_checkpoint_loads_offline_with_every_weight(sdxl_folder, tmp_path, monkeypatch):
    from diffusers import StableDiffusionXLPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "my-finetune.safetensors"
    state = write_original_checkpoint(sdxl_folder, path)
    # The layout community checkpoints use, not diffusers' own.
    for key in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
    ):
        assert key in state, key
    assert not any(k.startswith(("unet.", "down_blocks.", "text_model.")) for k in state)

    pipe = StableDiffusionXLPipeline.from_single_file(
        str(path), config=str(sdxl_folder), local_files_only=True, torch_dtype=torch.float32
    )
    ref = StableDiffusionXLPipeline.from_pretrained(sdxl_folder, local_files_only=True, torch_dtype=torch.float32)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        got, want = getattr(pipe, name).state_dict(), getattr(ref, name).state_dict()
        assert set(got) == set(want), name
        for key, value in want.items():
            assert not got[key].is_meta, (name, key)  # a weight the checkpoint did not fill
            assert torch.equal(got[key], value), (name, key)
    image = pipe("a fox", num_inference_steps=2, height=64, width=64, output_type="np").images
    assert image.shape == (1, 64, 64, 3) and bool((image == image).all())  # no NaN
