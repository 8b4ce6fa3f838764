"""Random-weight models of the published architectures, built directly in the dtype they are saved in.

Every module is made on the meta device (no memory), then each parameter is created once on the
target device in the target dtype and filled with random numbers: a full SDXL UNet in bfloat16 never
passes through float32 (5 GB, not 10), so one pipeline at a time fits a 24 GB machine.

- :func:`build_pipeline` ``turbo`` / ``ssd-1b`` / ``sdxl-base`` / ``sdxl-refiner``: the configs of
  ``engine/architectures.json`` (``arch="full"``) or the tiny preset's (``arch="tiny"``), saved with
  ``save_pretrained`` as the hub ships them (float16 as the ``fp16`` variant); the refiner with its real
  pipeline config (no first text encoder, ``requires_aesthetics_score``, ``force_zeros_for_empty_prompt``
  false). Shared parts (text encoders, VAE) come from the same seeds in every pipeline, as the real
  checkpoints ship identical ones, so the engine's content hashes share them.
- :func:`build_draft_decoder`: TAESDXL, ``AutoencoderTiny``'s defaults; :func:`build_vae_fix`: the
  fp16-fix VAE's layout (SDXL's VAE with ``force_upcast`` off).
- :mod:`benchmarks.addon_weights`: a Kohya-format SDXL LoRA and an ESRGAN x4plus-size model.

Used by ``benchmarks/fullsize.py`` (the CPU run of every architecture through the engine) and by the
GPU benchmark's folders (``benchmarks/folders.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PIPELINES = ("turbo", "ssd-1b", "sdxl-base", "sdxl-refiner")
SEEDS = {"text_encoder": 1, "text_encoder_2": 2, "vae": 3, "turbo": 10, "ssd-1b": 11, "sdxl-base": 12,
         "sdxl-refiner": 13, "taesdxl": 4}
DEFAULT_INIT_STD = 0.02  # random full-size weights with PyTorch's default init can overflow in float16


def as_dtype(dtype: Any):
    """``"bfloat16"`` / ``torch.bfloat16`` -> ``torch.bfloat16``."""
    import torch

    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def configs(arch: str) -> dict[str, Any]:
    """Component configs of ``arch`` ("full": the published sizes; "tiny": the tiny preset's)."""
    from engine import tiny

    full = tiny.full_architectures()
    schedulers = {key: {k: v for k, v in full[key].items() if k != "_class_name"}
                  for key in ("scheduler_turbo", "scheduler_sdxl")}
    if arch == "full":
        return {
            "unet": {"turbo": dict(full["unet_sdxl"], sample_size=64), "ssd-1b": full["unet_ssd1b"],
                     "sdxl-base": full["unet_sdxl"], "sdxl-refiner": full["unet_refiner"]},
            "vae": dict(full["vae"]),
            "text_encoder": dict(full["text_encoder"]),
            "text_encoder_2": dict(full["text_encoder_2"]),
            **schedulers,
        }
    if arch == "tiny":
        unets = {name: tiny._tiny_unet_config(name) for name in PIPELINES}
        for name in ("ssd-1b", "sdxl-base", "sdxl-refiner"):
            unets[name]["sample_size"] = 128
        width = tiny._TE_WIDTH
        te = {"hidden_size": width, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "max_position_embeddings": 77, "projection_dim": width}
        return {
            "unet": unets,
            "vae": tiny._tiny_vae_config(),
            "text_encoder": dict(te, hidden_act="quick_gelu"),
            "text_encoder_2": dict(te, hidden_act="gelu"),
            **schedulers,
        }
    raise ValueError(f"unknown architecture {arch!r}: full or tiny")


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Modules built inside hold their parameters on the meta device (buffers stay real, on the CPU)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        yield


def materialize(module, *, dtype, device: str = "cpu", init_std: float | None = DEFAULT_INIT_STD, seed: int = 0):
    """Give every meta parameter of ``module`` real storage in ``dtype`` on ``device``, filled at random.

    ``init_std``: matrices and kernels from N(0, init_std), biases zero, norm weights one; None: PyTorch's
    default init of each layer (``reset_parameters``; what ``AutoencoderTiny()`` gets). Deterministic for
    ``seed``. Returns ``module`` in eval mode.
    """
    import torch

    dtype = as_dtype(dtype)
    torch.manual_seed(seed)
    made: dict[int, torch.nn.Parameter] = {}  # tied parameters stay tied
    with torch.no_grad():
        for mod in module.modules():
            own = list(mod._parameters.items())
            if not any(p is not None for _, p in own):
                continue
            for name, old in own:
                if old is None:
                    continue
                if id(old) not in made:
                    made[id(old)] = torch.nn.Parameter(torch.empty(old.shape, dtype=dtype, device=device),
                                                       requires_grad=False)
                mod._parameters[name] = made[id(old)]
            if init_std is None and hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
                continue
            norm = "norm" in type(mod).__name__.lower()
            for name, param in mod._parameters.items():
                if param is None:
                    continue
                if param.dim() > 1:
                    param.normal_(0.0, init_std if init_std is not None else DEFAULT_INIT_STD)
                elif norm and name == "weight":
                    param.fill_(1.0)
                else:
                    param.zero_()
    module.to(device)  # the buffers
    return module.eval()


def make_tokenizer():
    """The offline CLIP tokenizer of the tiny preset (byte-level; see ``engine.tiny.make_tokenizer``)."""
    from engine.tiny import make_tokenizer as make

    folder = Path(tempfile.mkdtemp(prefix="tok-"))
    try:
        return make(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _text_encoders(cfg: dict, tokenizer, names, **kw) -> dict:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    out = {}
    for name in names:
        cls = CLIPTextModel if name == "text_encoder" else CLIPTextModelWithProjection
        vocab = len(tokenizer)
        ids = {"bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1}
        config = CLIPTextConfig(**{**ids, **cfg[name], "vocab_size": vocab})  # the tiny configs take ids
        with on_meta():
            model = cls(config)
        out[name] = materialize(model, seed=SEEDS[name], **kw)
    return out


def _vae(cfg: dict, **kw):
    from diffusers import AutoencoderKL

    with on_meta():
        vae = AutoencoderKL(**cfg)
    return materialize(vae, seed=SEEDS["vae"], **kw)


def unet(name: str, arch: str = "full", *, meta: bool = False, **kw):
    """The UNet of pipeline ``name``; on the meta device (shapes only, no memory) with ``meta``."""
    from diffusers import UNet2DConditionModel

    with on_meta():
        model = UNet2DConditionModel(**configs(arch)["unet"][name])
    return model if meta else materialize(model, seed=SEEDS[name], **kw)


def build_pipeline(name: str, folder: Path, *, dtype: Any = "bfloat16", arch: str = "full", device: str = "cpu",
                   init_std: float | None = DEFAULT_INIT_STD) -> Path:
    """Build pipeline ``name`` at random and save it into ``folder`` (once: an existing one is kept).

    Saved with ``save_pretrained`` into a temporary folder renamed into place; float16 as the ``fp16``
    variant, as the hub ships it. Nothing is kept in memory afterwards. Returns ``folder``.
    """
    import torch
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
    )

    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}: one of {', '.join(PIPELINES)}")
    folder = Path(folder)
    if (folder / "model_index.json").exists():
        return folder
    dtype = as_dtype(dtype)
    cfg = configs(arch)
    kw = {"dtype": dtype, "device": device, "init_std": init_std}
    tokenizer = make_tokenizer()
    refiner = name == "sdxl-refiner"
    encoders = _text_encoders(cfg, tokenizer, ["text_encoder_2"] if refiner else ["text_encoder", "text_encoder_2"],
                              **kw)
    parts: dict[str, Any] = {"vae": _vae(cfg["vae"], **kw), "unet": unet(name, arch, **kw), **encoders,
                             "tokenizer_2": tokenizer}
    if refiner:
        scheduler = EulerDiscreteScheduler.from_config(cfg["scheduler_sdxl"])
        pipe: Any = StableDiffusionXLImg2ImgPipeline(
            **parts, text_encoder=None, tokenizer=None, scheduler=scheduler,
            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        )
    else:
        scheduler = (EulerAncestralDiscreteScheduler.from_config(cfg["scheduler_turbo"]) if name == "turbo"
                     else EulerDiscreteScheduler.from_config(cfg["scheduler_sdxl"]))
        pipe = StableDiffusionXLPipeline(**parts, tokenizer=tokenizer, scheduler=scheduler)
    variant = "fp16" if dtype == torch.float16 else None
    save_atomically(folder, lambda tmp: pipe.save_pretrained(tmp, safe_serialization=True, variant=variant))
    return folder


def build_draft_decoder(folder: Path, *, dtype: Any = "bfloat16", arch: str = "full", device: str = "cpu") -> Path:
    """TAESDXL's architecture (``AutoencoderTiny``'s defaults; the tiny preset's widths at ``arch="tiny"``)
    with PyTorch's default init, saved as ``config.json`` + ``diffusion_pytorch_model.safetensors``."""
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    from engine.tiny import tiny_draft_decoder_config

    folder = Path(folder)
    if not (folder / "config.json").exists():
        with on_meta():
            taesd = AutoencoderTiny(**({} if arch == "full" else tiny_draft_decoder_config()))
        materialize(taesd, dtype=dtype, device=device, init_std=None, seed=SEEDS["taesdxl"])
        save_atomically(folder, lambda tmp: taesd.save_pretrained(tmp, safe_serialization=True))
    return folder


def build_vae_fix(folder: Path, *, dtype: Any = "bfloat16", arch: str = "full", device: str = "cpu",
                  init_std: float | None = DEFAULT_INIT_STD) -> Path:
    """The fp16-fix VAE's layout: SDXL's VAE config with ``force_upcast`` false (madebyollin/sdxl-vae-fp16-fix),
    saved without a variant as that repository's ``diffusion_pytorch_model.safetensors``."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        cfg = dict(configs(arch)["vae"], force_upcast=False)
        vae = _vae(cfg, dtype=dtype, device=device, init_std=init_std)
        save_atomically(folder, lambda tmp: vae.save_pretrained(tmp, safe_serialization=True))
    return folder


def save_atomically(folder: Path, save) -> None:
    """``save(tmp)`` into a temporary sibling of ``folder``, renamed into place (a racing process may win)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        save(tmp)
        os.replace(tmp, folder)
    except OSError:
        if not folder.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
