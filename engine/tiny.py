"""Random-weight SDXL-family pipelines: tiny ones for tests and CI, full-size ones for benchmarks.

The tiny preset keeps the real geometry (VAE with an 8x scale factor and 4 latent
channels, two CLIP text encoders whose hidden states are concatenated for the
UNet's cross-attention, SDXL's added-conditioning sizes, Turbo's trailing
Euler-ancestral scheduler) so that sizes, latents, batching and the
base-to-refiner hand-over behave as with the real models. The pipelines are
saved once with ``save_pretrained`` and then loaded through the same
``from_pretrained`` code as real weights (see ``engine.models``).

Shared parts (text encoders, VAE) are built from the same seed in every
pipeline, as the real SDXL, Turbo and SSD-1B checkpoints ship identical ones:
the loader's content-hash check then finds them identical and shares them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TINY_VERSION = "v2"
TINY_MODELS = ("turbo", "ssd-1b", "sdxl-base", "sdxl-refiner")
TINY_DRAFT_DECODER = "taesdxl"  # folder of the tiny AutoencoderTiny (TAESDXL's architecture, tiny widths)

_TE_WIDTH = 32  # both tiny text encoders; cross-attention = 32 + 32 like 768 + 1280 in SDXL
_TIME_EMBED = 8  # addition_time_embed_dim


def full_architectures() -> dict:
    """The full-size configs shipped with the engine (copied from the published checkpoints)."""
    return json.loads((Path(__file__).with_name("architectures.json")).read_text())


def _tiny_unet_config(kind: str) -> dict:
    refiner = kind == "sdxl-refiner"
    n_time_ids = 5 if refiner else 6
    text_embeds = _TE_WIDTH  # pooled output of text_encoder_2 (its projection_dim)
    config = {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        # Three levels like SDXL, attention only at the lowest one so that 1024 px finals stay
        # cheap on a CPU (attention over 128x128 latents would dominate).
        "block_out_channels": (16, 32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "attention_head_dim": (2, 4, 8),
        "transformer_layers_per_block": (1, 1, 1),
        "cross_attention_dim": _TE_WIDTH if refiner else 2 * _TE_WIDTH,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": _TIME_EMBED,
        "projection_class_embeddings_input_dim": n_time_ids * _TIME_EMBED + text_embeds,
        "norm_num_groups": 16,
    }
    if kind == "ssd-1b":
        # SSD-1B differs from SDXL in depth, and has no attention in its mid block.
        config["mid_block_type"] = "UNetMidBlock2D"
    return config


def _tiny_vae_config() -> dict:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (4, 8, 8, 8),  # four blocks: three 2x steps, the 8x scale factor
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        # No attention over 128x128 latents at 1024 px (16k tokens): on a CPU it would cost more than all else.
        "mid_block_add_attention": False,
        "sample_size": 512,
        # Latents of the round-trip VAE below have a std of about 0.57; this scales them to ~1 as
        # SDXL's 0.13025 does for its VAE, so image-to-image noise levels mean the same thing.
        "scaling_factor": 1.75,
        "force_upcast": True,
    }


def _embed(conv, taps: dict[tuple[int, int], float]) -> None:
    """Set ``conv`` to copy input channel ``o % in`` to output channel ``o`` through ``taps``."""
    import torch

    weight = torch.zeros_like(conv.weight)
    out_ch, in_ch = weight.shape[:2]
    for o in range(out_ch):
        for (y, x), value in taps.items():
            weight[o, o % in_ch, y, x] = value
    conv.weight.copy_(weight)
    if conv.bias is not None:
        conv.bias.zero_()


def make_roundtrip_vae(vae) -> None:
    """Turn a random tiny AutoencoderKL into one whose decode(encode(x)) resembles x.

    A random VAE decodes every latent to much the same texture, so image-to-image, upscaling
    and inpainting could not be tested: nothing of the start image would survive. Here every
    residual block becomes the identity, downsamplers average 2x2, upsamplers copy, and the
    in/out convolutions pass channels through; the group norms and activations stay, so the
    round trip is close (correlation about 0.8) but not exact, as with a real VAE.
    """
    import torch
    from diffusers.models.resnet import ResnetBlock2D

    center = {(1, 1): 1.0}
    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, ResnetBlock2D):
                module.conv2.weight.zero_()
                if module.conv2.bias is not None:
                    module.conv2.bias.zero_()
                if module.conv_shortcut is not None:
                    _embed(module.conv_shortcut, {(0, 0): 1.0})
        enc, dec = vae.encoder, vae.decoder
        _embed(enc.conv_in, center)
        for block in enc.down_blocks:
            if block.downsamplers:
                _embed(block.downsamplers[0].conv, {(0, 0): 0.25, (0, 1): 0.25, (1, 0): 0.25, (1, 1): 0.25})
        latent = vae.config.latent_channels
        _embed(enc.conv_out, center)
        enc.conv_out.weight[latent:] = 0.0  # log-variance: a near-zero posterior std
        enc.conv_out.bias[latent:] = -20.0
        _embed(vae.quant_conv, {(0, 0): 1.0})
        _embed(vae.post_quant_conv, {(0, 0): 1.0})
        _embed(dec.conv_in, center)
        for block in dec.up_blocks:
            if block.upsamplers:
                _embed(block.upsamplers[0].conv, center)
        _embed(dec.conv_out, center)


def tiny_draft_decoder_config() -> dict:
    """TAESDXL's layout (three 2x upsamplings, 4 latent channels, ReLU blocks) at tiny widths."""
    return {
        "encoder_block_out_channels": (8, 8, 8, 8),
        "decoder_block_out_channels": (8, 8, 8, 8),
        "num_encoder_blocks": (1, 1, 1, 1),
        "num_decoder_blocks": (1, 1, 1, 1),
        "latent_channels": 4,
    }


def make_passthrough_decoder(taesd, scaling_factor: float) -> None:
    """Make a random tiny AutoencoderTiny decode latents the way the tiny round-trip VAE does.

    The tiny VAE decodes pipeline latents ``x`` to about ``x / scaling_factor`` in its first three
    channels; this decoder does the same (give or take TAESD's soft clamp), so drafts decoded by
    either look alike and image-to-image of a draft keeps its layout. Each latent channel is split
    into its positive and negative halves (ReLUs pass both), the residual branches are zeroed, the
    upsamplers copy, and the last convolution joins the halves and shifts into TAESD's 0-1 range.
    """
    import torch

    decoder = taesd.decoder.layers
    convs = [m for m in decoder if isinstance(m, torch.nn.Conv2d)]
    first, last = convs[0], convs[-1]
    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
        latent = first.in_channels
        for k in range(latent):  # channel 2k = +x_k, 2k+1 = -x_k (scaled to image units)
            first.weight[2 * k, k, 1, 1] = 1.0 / (2 * scaling_factor)
            first.weight[2 * k + 1, k, 1, 1] = -1.0 / (2 * scaling_factor)
        for conv in convs[1:-1]:
            if conv.in_channels == conv.out_channels and conv.kernel_size == (3, 3) and conv.bias is None:
                for c in range(conv.out_channels):  # the convolutions between upsamplers pass through
                    conv.weight[c, c, 1, 1] = 1.0
        assert last.bias is not None  # TAESD's last convolution has one
        for o in range(last.out_channels):
            k = o % latent
            last.weight[o, 2 * k, 1, 1] = 1.0
            last.weight[o, 2 * k + 1, 1, 1] = -1.0
            last.bias[o] = 0.5


def build_tiny_draft_decoder(scaling_factor: float):
    """A tiny AutoencoderTiny standing in for TAESDXL (see :func:`make_passthrough_decoder`)."""
    # The defining module: mypy reads the package's lazy name as a dummy object without nn.Module methods.
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    _seeded(4)
    taesd = AutoencoderTiny(**tiny_draft_decoder_config())
    make_passthrough_decoder(taesd, scaling_factor)
    return taesd.eval()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def make_tokenizer(directory: Path):
    """A CLIP tokenizer made offline: a byte-level vocabulary and no merges.

    Written as vocab.json + merges.txt so that it also loads back with ``from_pretrained``.
    """
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for ch in byte_chars:
        vocab.setdefault(ch, len(vocab))
    for ch in byte_chars:
        vocab.setdefault(ch + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(directory), model_max_length=77)


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def build_components(arch: str = "tiny", *, init_std: float | None = None) -> dict:
    """Random-weight components for every model: {"turbo": {...}, "ssd-1b": {...}, ...}.

    ``arch`` is "tiny" or "full" (the published sizes, for benchmarks). Text encoders and VAE
    are built once and the same objects are placed in every pipeline's components.
    ``init_std`` re-initialises weights with a small normal std (random full-size weights can
    overflow in float16).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tmp = Path(tempfile.mkdtemp(prefix="tok-"))
    try:
        tokenizer = make_tokenizer(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    vocab_size = len(tokenizer)

    if arch == "full":
        full = full_architectures()
        unet_cfg = {
            "turbo": dict(full["unet_sdxl"], sample_size=64),
            "ssd-1b": full["unet_ssd1b"],
            "sdxl-base": full["unet_sdxl"],
            "sdxl-refiner": full["unet_refiner"],
        }
        vae_cfg = full["vae"]
        te1_cfg = dict(full["text_encoder"], vocab_size=vocab_size)
        te2_cfg = dict(full["text_encoder_2"], vocab_size=vocab_size)
        sched_turbo = dict(full["scheduler_turbo"])
        sched_sdxl = dict(full["scheduler_sdxl"])
    elif arch == "tiny":
        unet_cfg = {name: _tiny_unet_config(name) for name in TINY_MODELS}
        unet_cfg["sdxl-base"]["sample_size"] = 128
        unet_cfg["ssd-1b"]["sample_size"] = 128
        unet_cfg["sdxl-refiner"]["sample_size"] = 128
        vae_cfg = _tiny_vae_config()
        te = {
            "hidden_size": _TE_WIDTH,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "projection_dim": _TE_WIDTH,
            "vocab_size": vocab_size,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        }
        te1_cfg = dict(te, hidden_act="quick_gelu")
        te2_cfg = dict(te, hidden_act="gelu")
        full = full_architectures()
        sched_turbo = dict(full["scheduler_turbo"])
        sched_sdxl = dict(full["scheduler_sdxl"])
    else:
        raise ValueError(f"unknown architecture {arch!r}: tiny or full")

    for cfg in (sched_turbo, sched_sdxl):
        cfg.pop("_class_name", None)

    def init(module):
        if init_std is not None:
            with torch.no_grad():
                for p in module.parameters():
                    if p.dim() > 1:
                        p.normal_(0.0, init_std)
        return module.eval()

    _seeded(1)
    text_encoder = init(CLIPTextModel(CLIPTextConfig(**te1_cfg)))
    _seeded(2)
    text_encoder_2 = init(CLIPTextModelWithProjection(CLIPTextConfig(**te2_cfg)))
    _seeded(3)
    vae = init(AutoencoderKL(**vae_cfg))
    if arch == "tiny":
        make_roundtrip_vae(vae)
    unets = {}
    for i, name in enumerate(TINY_MODELS):
        _seeded(10 + i)
        unets[name] = init(UNet2DConditionModel(**unet_cfg[name]))

    def base_parts(name: str, scheduler) -> dict:
        return {
            "vae": vae,
            "text_encoder": text_encoder,
            "text_encoder_2": text_encoder_2,
            "tokenizer": tokenizer,
            "tokenizer_2": tokenizer,
            "unet": unets[name],
            "scheduler": scheduler,
        }

    return {
        "turbo": base_parts("turbo", EulerAncestralDiscreteScheduler.from_config(sched_turbo)),
        "ssd-1b": base_parts("ssd-1b", EulerDiscreteScheduler.from_config(sched_sdxl)),
        "sdxl-base": base_parts("sdxl-base", EulerDiscreteScheduler.from_config(sched_sdxl)),
        "sdxl-refiner": {
            "vae": vae,
            "text_encoder": None,
            "text_encoder_2": text_encoder_2,
            "tokenizer": None,
            "tokenizer_2": tokenizer,
            "unet": unets["sdxl-refiner"],
            "scheduler": EulerDiscreteScheduler.from_config(sched_sdxl),
            "requires_aesthetics_score": True,
        },
    }


def build_pipelines(arch: str = "tiny", *, init_std: float | None = None) -> dict:
    """The four pipelines from :func:`build_components`, in memory."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    parts = build_components(arch, init_std=init_std)
    return {
        name: (StableDiffusionXLImg2ImgPipeline if name == "sdxl-refiner" else StableDiffusionXLPipeline)(**comp)
        for name, comp in parts.items()
    }


def tiny_root(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"tiny-{TINY_VERSION}"


def ensure_tiny_models(cache_dir: Path) -> Path:
    """Build and save the tiny pipelines under ``cache_dir`` once; returns their root folder.

    Each pipeline is saved to a temporary folder and renamed into place, so a crash or a
    second process building at the same time never leaves a half-written model behind.
    """
    root = tiny_root(cache_dir)
    if not (root / TINY_DRAFT_DECODER / "config.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        decoder = build_tiny_draft_decoder(_tiny_vae_config()["scaling_factor"])
        _save_atomically(root, TINY_DRAFT_DECODER, decoder)
    if all((root / name / "model_index.json").exists() for name in TINY_MODELS):
        return root
    root.mkdir(parents=True, exist_ok=True)
    log.info("building tiny random pipelines under %s", root)
    pipelines = build_pipelines("tiny")
    for name, pipe in pipelines.items():
        if not (root / name / "model_index.json").exists():
            _save_atomically(root, name, pipe)
    return root


def _save_atomically(root: Path, name: str, saveable) -> None:
    """``save_pretrained`` into a temporary folder, renamed into place (a racing process may win)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    saveable.save_pretrained(tmp, safe_serialization=True)
    try:
        os.replace(tmp, root / name)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
