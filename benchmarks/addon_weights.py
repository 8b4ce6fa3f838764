"""Random add-on weights in the layouts owners download: a Kohya-format SDXL LoRA and an ESRGAN x4plus.

- :func:`build_kohya_lora`: the key names and shapes kohya-ss/sd-scripts writes for SDXL (the format of
  most LoRAs on the model sites): ``lora_unet_<SGM module>`` for every linear layer of the UNet's
  transformer blocks (``input_blocks_4_1_transformer_blocks_0_attn1_to_q``, ``proj_in``, ``ff_net_0_proj``,
  ...), ``lora_te1_``/``lora_te2_text_model_encoder_layers_<i>_self_attn_q_proj`` (and ``k``, ``v``,
  ``out_proj``, ``mlp_fc1``, ``mlp_fc2``) for both text encoders, each with ``.lora_down.weight`` (rank x in),
  ``.lora_up.weight`` (out x rank) and a scalar ``.alpha``; float16, as sd-scripts saves them.
- :func:`build_esrgan`: RealESRGAN_x4plus's RRDBNet (23 blocks, 64 features, growth 32, the new-arch key
  names) with random weights in float32, as a .safetensors file spandrel loads.

Shapes come from the meta-device models of :mod:`benchmarks.architectures` (no memory), so ``arch="tiny"``
gives the same layouts for the tiny preset's models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from benchmarks.architectures import as_dtype, configs, unet

KOHYA_TE_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                   "mlp.fc1", "mlp.fc2")


def sgm_name(name: str, layers_per_block: int) -> str | None:
    """A diffusers UNet module name inside a transformer (``down_blocks.1.attentions.0.proj_in``) in the original
    SGM layout sd-scripts names SDXL LoRAs by (``input_blocks.4.1.proj_in``); None outside the attentions."""
    per_level = layers_per_block + 1  # resnets (and attentions) plus the down/upsampler of each level
    match = re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name)
    if match:
        block, index, rest = int(match[1]), int(match[2]), match[3]
        return f"input_blocks.{block * per_level + index + 1}.1.{rest}"
    match = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name)
    if match:
        block, index, rest = int(match[1]), int(match[2]), match[3]
        return f"output_blocks.{block * per_level + index}.1.{rest}"
    match = re.match(r"mid_block\.attentions\.0\.(.+)", name)
    return f"middle_block.1.{match[1]}" if match else None


def kohya_layers(arch: str = "full", model: str = "turbo") -> dict[str, tuple[int, int]]:
    """{Kohya module name: (out features, in features)} of an SDXL LoRA for ``model``'s UNet and both text encoders."""
    import torch

    layers: dict[str, tuple[int, int]] = {}
    meta_unet = unet(model, arch, meta=True)
    per_block = meta_unet.config.layers_per_block
    for name, module in meta_unet.named_modules():
        if isinstance(module, torch.nn.Linear) and ".attentions." in f".{name}":
            sgm = sgm_name(name, per_block)
            if sgm is not None:
                layers["lora_unet_" + sgm.replace(".", "_")] = (module.out_features, module.in_features)
    cfg = configs(arch)
    for prefix, key in (("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2")):
        # sd-scripts names CLIP's layers as transformers 4 did (text_model.encoder.layers.N...), whatever the
        # installed transformers calls them; the shapes follow from the config.
        width, inner = cfg[key]["hidden_size"], cfg[key]["intermediate_size"]
        shapes = {"self_attn.q_proj": (width, width), "self_attn.k_proj": (width, width),
                  "self_attn.v_proj": (width, width), "self_attn.out_proj": (width, width),
                  "mlp.fc1": (inner, width), "mlp.fc2": (width, inner)}
        for index in range(cfg[key]["num_hidden_layers"]):
            for layer in KOHYA_TE_LAYERS:
                layers[f"{prefix}text_model_encoder_layers_{index}_{layer.replace('.', '_')}"] = shapes[layer]
    return layers


def build_kohya_lora(path: Path, *, arch: str = "full", rank: int = 32, alpha: float = 16.0, dtype: Any = "float16",
                     seed: int = 5) -> Path:
    """A random SDXL LoRA in Kohya's format at ``path`` (.safetensors); rank ``rank``, ``alpha`` as trained."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        return path
    dtype = as_dtype(dtype)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, (out_features, in_features) in kohya_layers(arch).items():
        r = min(rank, out_features, in_features)
        down = torch.randn(r, in_features, generator=generator) / in_features**0.5
        up = torch.randn(out_features, r, generator=generator) * 0.05  # a trained up-projection is far from zero
        tensors[f"{name}.lora_down.weight"] = down.to(dtype).contiguous()
        tensors[f"{name}.lora_up.weight"] = up.to(dtype).contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                                           "ss_network_alpha": str(alpha), "ss_base_model_version": "sdxl_base_v1-0"})
    tmp.replace(path)
    return path


def esrgan_state_dict(num_blocks: int = 23, features: int = 64, growth: int = 32, seed: int = 6) -> dict:
    """RealESRGAN_x4plus's RRDBNet with random weights (basicsr's init: Kaiming normal x 0.1, zero biases)."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def conv(out_ch: int, in_ch: int, scale: float = 0.1) -> dict[str, torch.Tensor]:
        std = scale * (2.0 / (in_ch * 9)) ** 0.5
        return {"weight": torch.randn(out_ch, in_ch, 3, 3, generator=generator) * std, "bias": torch.zeros(out_ch)}

    layers = {"conv_first": conv(features, 3, 1.0)}
    for block in range(num_blocks):
        for rdb in (1, 2, 3):
            for i in range(1, 6):
                layers[f"body.{block}.rdb{rdb}.conv{i}"] = conv(features if i == 5 else growth,
                                                                features + (i - 1) * growth)
    layers["conv_body"] = conv(features, features)
    for key in ("conv_up1", "conv_up2", "conv_hr"):
        layers[key] = conv(features, features, 1.0)
    layers["conv_last"] = conv(3, features, 1.0)
    return {f"{key}.{part}": tensor.contiguous() for key, parts in layers.items() for part, tensor in parts.items()}


def build_esrgan(path: Path, *, arch: str = "full") -> Path:
    """An ESRGAN x4plus-size model (``arch="tiny"``: one block, 8 features) as .safetensors at ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    if not path.exists():
        state = esrgan_state_dict() if arch == "full" else esrgan_state_dict(num_blocks=1, features=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(state, str(tmp))
        tmp.replace(path)
    return path
