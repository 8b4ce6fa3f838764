"""Tiny random versions of every add-on, saved in the layouts the real loaders read.

:func:`ensure_tiny_addons` builds, once per ``cache_dir`` (next to the tiny pipelines of
:mod:`engine.tiny`, whose UNet and text encoders they are shaped for):

- ``loras/tiny-ink.safetensors`` (UNet + both text encoders) and ``loras/tiny-glow.safetensors``
  (UNet only): peft LoRA layers with random weights, saved with
  ``StableDiffusionXLPipeline.save_lora_weights``;
- ``ip-adapter/sdxl_models/ip-adapter_tiny.safetensors`` and ``.../image_encoder``: an IP-Adapter
  state dict shaped for the tiny UNet's cross-attention layers and a tiny
  ``CLIPVisionModelWithProjection``, as in ``h94/IP-Adapter``;
- ``upscaler/tiny-realesrgan-x4.safetensors``: a Real-ESRGAN (RRDBNet, new-arch keys) state dict
  with 8 features, one block and the usual growth of 32 (which spandrel assumes); its weights
  make it a nearest-neighbour 4x enlarger, so an upscaled image can be compared with its source;
- ``describe/``: a tiny random BLIP captioner with a locally made BERT tokenizer, saved with
  ``save_pretrained``.

Each part is written to a temporary folder and renamed into place, so a half-built add-on is
never picked up.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TINY_ADDONS_VERSION = "v3"
TINY_LORAS = ("tiny-ink", "tiny-glow")
_PARTS = ("loras", "ip-adapter", "upscaler", "describe")
_DESCRIBE_WORDS = (
    "a an the of with and in on at painting photograph illustration close-up view cat dog bird horse tree "
    "house car boat mountain river city street forest flower field sky sunset night red blue green yellow "
    "white black small large old young bright dark sitting standing flying under over near front colorful "
    "portrait landscape drawing sketch"
).split()


def tiny_addons_root(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"tiny-addons-{TINY_ADDONS_VERSION}"


def ensure_tiny_addons(cache_dir: Path) -> Path:
    """Build the tiny add-ons under ``cache_dir`` once (with the tiny pipelines they fit); returns their root."""
    root = tiny_addons_root(cache_dir)
    builders: dict[str, Callable[[Path, Path], None]] = {
        "loras": _build_loras,
        "ip-adapter": _build_ip_adapter,
        "upscaler": _build_upscaler,
        "describe": _build_describe,
    }
    missing = [part for part in _PARTS if not (root / part / ".complete").exists()]
    if not missing:
        return root
    from engine.tiny import ensure_tiny_models, tiny_root

    ensure_tiny_models(Path(cache_dir))
    turbo = tiny_root(Path(cache_dir)) / "turbo"
    root.mkdir(parents=True, exist_ok=True)
    for part in missing:
        log.info("building tiny add-on %s under %s", part, root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{part}-", dir=root))
        builders[part](tmp, turbo)
        (tmp / ".complete").write_text(TINY_ADDONS_VERSION)
        final = root / part
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished it first
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _randomise(module, pattern: str, std: float, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if pattern in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def _build_loras(folder: Path, turbo: Path) -> None:
    """Two LoRAs made with peft on the tiny Turbo UNet (and, for tiny-ink, its text encoders)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    attn = ["to_q", "to_k", "to_v", "to_out.0"]
    clip_attn = ["q_proj", "k_proj", "v_proj", "out_proj"]
    for index, name in enumerate(TINY_LORAS):
        pipe = StableDiffusionXLPipeline.from_pretrained(turbo, use_safetensors=True)
        pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=attn))
        # peft starts lora_B at zero (a LoRA that does nothing); a trained one has moved away from it.
        _randomise(pipe.unet, "lora_B", 0.3, seed=100 + index)
        layers = {"unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))}
        if name == "tiny-ink":
            for key, encoder in (("text_encoder_lora_layers", pipe.text_encoder),
                                 ("text_encoder_2_lora_layers", pipe.text_encoder_2)):
                # peft directly: transformers' own add_adapter wants a newer peft than the registry has.
                inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                                   target_modules=clip_attn), encoder)
                _randomise(encoder, "lora_B", 0.3, seed=200 + index)
                layers[key] = convert_state_dict_to_diffusers(get_peft_model_state_dict(encoder))
        StableDiffusionXLPipeline.save_lora_weights(folder, weight_name=f"{name}.safetensors", **layers)


def _build_ip_adapter(folder: Path, turbo: Path) -> None:
    """A tiny image encoder and an IP-Adapter (image projection + to_k_ip/to_v_ip per cross-attention)."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(7)
    embed_dim = 32
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=embed_dim,
    )).eval()
    encoder.save_pretrained(folder / "sdxl_models" / "image_encoder", safe_serialization=True)

    unet = UNet2DConditionModel.from_pretrained(turbo, subfolder="unet", use_safetensors=True)
    cross = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(8)

    def rand(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(shape, generator=generator) * std).contiguous()

    tensors = {
        "image_proj.proj.weight": rand(cross * 4, embed_dim, std=0.5),
        "image_proj.proj.bias": rand(cross * 4, std=0.1),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    # Same walk as diffusers' _convert_ip_adapter_attn_to_diffusers: ids 1, 3, 5... for each attn2.
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross, std=0.3)
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross, std=0.3)
        key_id += 2
    save_file(tensors, str(folder / "sdxl_models" / "ip-adapter_tiny.safetensors"))


def tiny_esrgan_state_dict(num_filters: int = 8, growth: int = 32, in_channels: int = 3) -> dict:
    """A Real-ESRGAN x4 RRDBNet (new-arch keys, one block) that enlarges 4x by copying pixels.

    The dense blocks and the trunk convolution are zero, so the residual trunk is the identity;
    ``conv_first`` copies the colour channels into the first features, the two upsampling steps
    are nearest-neighbour with identity convolutions (LeakyReLU keeps the positive values), and
    ``conv_last`` reads the colours back.
    """
    import torch

    def conv(out_ch: int, in_ch: int, identity: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.zeros(out_ch, in_ch, 3, 3)
        if identity:
            for c in range(min(out_ch, in_ch)):
                weight[c, c, 1, 1] = 1.0
        return weight, torch.zeros(out_ch)

    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {"conv_first": conv(num_filters, in_channels, True)}
    for rdb in (1, 2, 3):
        for i in range(1, 6):
            out_ch = num_filters if i == 5 else growth
            layers[f"body.0.rdb{rdb}.conv{i}"] = conv(out_ch, num_filters + (i - 1) * growth)
    layers["conv_body"] = conv(num_filters, num_filters)
    for key in ("conv_up1", "conv_up2", "conv_hr"):
        layers[key] = conv(num_filters, num_filters, True)
    layers["conv_last"] = conv(3, num_filters, True)
    state: dict[str, torch.Tensor] = {}
    for key, (weight, bias) in layers.items():
        state[f"{key}.weight"] = weight
        state[f"{key}.bias"] = bias
    return state


def _build_upscaler(folder: Path, turbo: Path) -> None:
    from safetensors.torch import save_file

    save_file(tiny_esrgan_state_dict(), str(folder / "tiny-realesrgan-x4.safetensors"))


def _build_describe(folder: Path, turbo: Path) -> None:
    """A tiny random BLIP captioner; tokenizer and image processor made here and saved beside it."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = specials + list(dict.fromkeys(_DESCRIBE_WORDS))
    tokenizer = BertTokenizer(
        vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True, bos_token="[DEC]",
        model_max_length=40,
    )
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)

    ids = {token: vocab.index(token) for token in specials}
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "encoder_hidden_size": 32,
                     "max_position_embeddings": 40, "pad_token_id": ids["[PAD]"],
                     "bos_token_id": ids["[DEC]"], "eos_token_id": ids["[SEP]"], "sep_token_id": ids["[SEP]"]},
        projection_dim=32,
    )
    torch.manual_seed(9)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tiny-describe.json").write_text(json.dumps({"vocab_size": len(vocab)}))
