"""Single-file SDXL checkpoints in the original (Stability "LDM") key layout, built from a diffusers folder.

Community SDXL fine-tunes ship as one ``.safetensors`` in this layout (``model.diffusion_model.*``,
``first_stage_model.*``, ``conditioner.embedders.0.transformer.*`` for CLIP-L and
``conditioner.embedders.1.model.*`` for OpenCLIP bigG). diffusers reads it with
``StableDiffusionXLPipeline.from_single_file`` but has no writer in the package (only a script for the
full-size block layout), so the tests make tiny ones here, from any UNet block layout (config-driven).

One trap, found building these: diffusers tells the two text encoders apart by their width, so a
checkpoint whose two encoders are equally wide (the tiny preset's) loads CLIP-L into both and leaves the
projection empty. ``widen_second_encoder`` gives a tiny folder SDXL's shape (second encoder wider).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(state: dict, prefixes: dict[str, str], rest_fn) -> dict:
    out = {}
    for key, value in state.items():
        matches = [p for p in prefixes if key.startswith(p + ".")]
        if not matches:
            out[key] = value
            continue
        best = max(matches, key=len)
        new_rest, new_value = rest_fn(best, key[len(best) + 1 :], value)
        out[f"{prefixes[best]}.{new_rest}"] = new_value
    return out


def unet_to_original(state: dict, config: dict) -> dict:
    names = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "mid_block.resnets.0": "middle_block.0",
        "mid_block.attentions.0": "middle_block.1",
        "mid_block.resnets.1": "middle_block.2",
    }
    layers, blocks = config["layers_per_block"], len(config["down_block_types"])
    k = 1
    for i in range(blocks):
        for j in range(layers):
            names[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{k}.0"
            names[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{k}.1"
            k += 1
        if i < blocks - 1:
            names[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{k}.0.op"
            k += 1
    k = 0
    for i, kind in enumerate(config["up_block_types"]):
        for j in range(layers + 1):
            names[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{k}.0"
            names[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{k}.1"
            if j == layers and i < blocks - 1:
                slot = 2 if kind.startswith("CrossAttn") else 1
                names[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{k}.{slot}.conv"
            k += 1

    def rest(prefix: str, rest: str, value):
        if ".resnets." in f".{prefix}.":
            head, _, tail = rest.partition(".")
            return f"{_RESNET[head]}.{tail}", value
        return rest, value

    return {f"model.diffusion_model.{k}": v for k, v in _rename(state, names, rest).items()}


def vae_to_original(state: dict, config: dict) -> dict:
    blocks = len(config["block_out_channels"])
    names = {}
    for i in range(blocks):
        up = blocks - 1 - i  # the original numbers decoder blocks the other way round
        for j in range(config["layers_per_block"] + 1):
            names[f"encoder.down_blocks.{i}.resnets.{j}"] = f"encoder.down.{i}.block.{j}"
            names[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.up.{up}.block.{j}"
        names[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = f"encoder.down.{i}.downsample.conv"
        names[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = f"decoder.up.{up}.upsample.conv"
    for side in ("encoder", "decoder"):
        names[f"{side}.mid_block.resnets.0"] = f"{side}.mid.block_1"
        names[f"{side}.mid_block.resnets.1"] = f"{side}.mid.block_2"
        names[f"{side}.mid_block.attentions.0"] = f"{side}.mid.attn_1"
        names[f"{side}.conv_norm_out"] = f"{side}.norm_out"

    def rest(prefix: str, rest: str, value):
        if ".attentions." in prefix:
            for new, old in _VAE_ATTENTION.items():
                if rest.startswith(new + "."):
                    rest = old + rest[len(new) :]
                    break
            return rest, value.reshape(*value.shape, 1, 1) if value.ndim == 2 else value  # linear -> 1x1 conv
        return rest.replace("conv_shortcut", "nin_shortcut"), value

    return {f"first_stage_model.{k}": v for k, v in _rename(state, names, rest).items()}


def clip_l_to_original(state: dict) -> dict:
    prefix = "conditioner.embedders.0.transformer."
    return {prefix + (k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in state.items()}


def open_clip_to_original(state: dict) -> dict:
    prefix = "conditioner.embedders.1.model."
    out: dict = {}
    qkv: dict[tuple[str, str], list] = {}
    fixed = {
        "text_projection.weight": "text_projection",
        "embeddings.position_embedding.weight": "positional_embedding",
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key in fixed:
            out[prefix + fixed[key]] = value.T.contiguous() if key.startswith("text_projection") else value
            continue
        if not key.startswith("encoder.layers."):
            continue  # position_ids: a buffer, not a weight
        key = key.replace("encoder.layers.", "transformer.resblocks.").replace("self_attn", "attn")
        key = key.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
        key = key.replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj")
        for index, part in enumerate(("q_proj", "k_proj", "v_proj")):
            if f".attn.{part}." in key:
                base, kind = key.split(f".{part}.")
                qkv.setdefault((base, kind), [None, None, None])[index] = value
                break
        else:
            out[prefix + key] = value
    for (base, kind), parts in qkv.items():
        out[f"{prefix}{base}.in_proj_{kind}"] = torch.cat(parts)
    return out


def write_original_checkpoint(folder: Path, path: Path) -> dict:
    """The UNet, VAE and both text encoders of a diffusers SDXL ``folder`` as one original-layout file."""

    def config(name: str) -> dict:
        return json.loads((folder / name / "config.json").read_text())

    state = {
        **unet_to_original(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"), config("unet")),
        **vae_to_original(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), config("vae")),
        **clip_l_to_original(load_file(folder / "text_encoder" / "model.safetensors")),
        **open_clip_to_original(load_file(folder / "text_encoder_2" / "model.safetensors")),
    }
    save_file(state, path)
    return state


def widen_second_encoder(src: Path, dst: Path, seed: int = 0) -> Path:
    """A copy of the tiny SDXL folder ``src`` whose second text encoder is twice as wide (new random weights)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    shutil.copytree(src, dst)
    torch.manual_seed(seed)
    width = CLIPTextConfig.from_pretrained(dst / "text_encoder").hidden_size
    wide = CLIPTextConfig.from_pretrained(dst / "text_encoder_2")
    wide.hidden_size, wide.projection_dim, wide.intermediate_size = 2 * width, 2 * width, 4 * width
    CLIPTextModelWithProjection(wide).save_pretrained(dst / "text_encoder_2")
    unet = {k: v for k, v in json.loads((dst / "unet" / "config.json").read_text()).items() if not k.startswith("_")}
    unet["cross_attention_dim"] = 3 * width
    unet["projection_class_embeddings_input_dim"] = 6 * unet["addition_time_embed_dim"] + 2 * width
    UNet2DConditionModel.from_config(unet).save_pretrained(dst / "unet")
    return dst
