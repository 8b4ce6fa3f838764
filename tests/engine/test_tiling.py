"""Seamless tiles: with circular padding the networks see no edge, so a shifted input gives a shifted output."""

from __future__ import annotations

import pytest
import torch

from engine.tiling import seamless
from engine.tiny import build_components


@pytest.fixture(scope="module")
def turbo():
    return build_components("tiny")["turbo"]


def _unet_out(unet, latents):
    batch = latents.shape[0]
    hidden = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    pooled = torch.randn(batch, 32, generator=torch.Generator().manual_seed(2))
    time_ids = torch.tensor([[512.0, 512.0, 0.0, 0.0, 512.0, 512.0]] * batch)
    with torch.no_grad():
        return unet(
            latents, 999, encoder_hidden_states=hidden, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        ).sample


def _shift(x, pixels):
    return torch.roll(x, shifts=(pixels, pixels), dims=(-2, -1))


def test_unet_with_seamless_padding_sees_no_edge(turbo):
    unet = turbo["unet"]
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    shift = 8  # a multiple of the UNet's 4x downsampling, so every level shifts by whole pixels

    with seamless(unet) as switched:
        assert switched > 0
        wrapped = _unet_out(unet, _shift(latents, shift))
        expected = _shift(_unet_out(unet, latents), shift)
    assert torch.allclose(wrapped, expected, atol=1e-4)

    # Zero padding (the default, restored on exit) does see the edges: the same check fails.
    plain = _unet_out(unet, _shift(latents, shift))
    assert not torch.allclose(plain, _shift(_unet_out(unet, latents), shift), atol=1e-3)


def test_vae_decoder_with_seamless_padding_sees_no_edge():
    from diffusers import AutoencoderKL

    from engine.tiny import _tiny_vae_config

    torch.manual_seed(4)  # random kernels: the tiny preset's round-trip VAE has centre taps only
    vae = AutoencoderKL(**_tiny_vae_config()).eval()
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with seamless(vae), torch.no_grad():
        image = vae.decode(latents).sample
        shifted = vae.decode(_shift(latents, 4)).sample
    assert torch.allclose(shifted, _shift(image, 4 * 8), atol=1e-4)
    with torch.no_grad():
        plain = vae.decode(latents).sample
        plain_shifted = vae.decode(_shift(latents, 4)).sample
    assert not torch.allclose(plain_shifted, _shift(plain, 4 * 8), atol=1e-3)


def test_padding_is_restored_even_when_the_job_fails(turbo):
    unet = turbo["unet"]
    before = [m.padding_mode for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
    with pytest.raises(RuntimeError), seamless(unet, None):
        assert all(
            m.padding_mode == "circular" for m in unet.modules() if isinstance(m, torch.nn.Conv2d) and any(m.padding)
        )
        raise RuntimeError("the job failed")
    assert [m.padding_mode for m in unet.modules() if isinstance(m, torch.nn.Conv2d)] == before
