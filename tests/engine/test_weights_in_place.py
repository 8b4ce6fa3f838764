"""The weights of the plain draft path stay where CUDA graphs captured them, and one bad image fails alone.

A CUDA graph replays the addresses of the weights it read at capture (``engine.graphs``): a job that
rebuilds a module or moves a weight (re-fusing QKV after a LoRA job, ``vae.to(float32)`` and back
after a NaN decode) would leave every later plain draft reading freed memory on a GPU. On the CPU
the storage addresses (``data_ptr``) show it all the same.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import DraftRequest, JobFailed
from engine.graphs import graph_key, weights_fingerprint

from .conftest import pixels

SIDE = 256


def draft(prompt: str = "a lighthouse at dusk", seed: int = 5, **craft) -> DraftRequest:
    return DraftRequest(prompt, seed, width=SIDE, height=SIDE, count=1, **craft)


def run(engine, request):
    return engine.submit(request, user="u").future.result(timeout=300)


def reference_png() -> bytes:
    rng = np.random.RandomState(4)
    buffer = io.BytesIO()
    Image.fromarray((rng.rand(40, 40, 3) * 255).astype("uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def plain_path(engine) -> dict[str, torch.nn.Module]:
    """The modules a plain text-to-image draft runs through."""
    pipe = engine.registry.get("turbo").text2img
    return {
        "unet": pipe.unet,
        "text_encoder": pipe.text_encoder,
        "text_encoder_2": pipe.text_encoder_2,
        "draft decoder": engine.recipes.draft_decoder() or pipe.vae,
    }


def storage(engine) -> dict[str, int]:
    """Every weight of the plain draft path -> its storage address (peft's names unwrapped)."""
    out = {}
    for part, module in plain_path(engine).items():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if ".lora_" not in name:
                out[f"{part}.{name.replace('.base_layer', '')}"] = tensor.data_ptr()
    return out


def counts(engine) -> dict[str, int]:
    return {part: sum(p.numel() for p in module.parameters()) for part, module in plain_path(engine).items()}


class NanOnce:
    """A forward hook on the draft decoder: image ``row`` of the next decode in ``dtype`` comes out NaN."""

    def __init__(self, dtype: torch.dtype, row: int = 0):
        self.dtype, self.row, self.armed, self.fired = dtype, row, False, 0

    def __call__(self, module, args, output):
        if self.armed and output.dtype == self.dtype and output.shape[0] > self.row:
            self.armed = False
            self.fired += 1
            output = output.clone()
            output[self.row] = float("nan")
            return output
        return None


@pytest.mark.parametrize("fuse_qkv", [False, True], ids=["unfused", "fused"])
def test_plain_draft_weights_stay_in_place_after_every_kind_of_job(make_engine, monkeypatch, fuse_qkv):
    from engine.addons.tiny import ensure_tiny_addons

    monkeypatch.setenv("LORA_LOADED_MAX", "1")  # the second LoRA evicts the first
    engine = make_engine(fuse_qkv=fuse_qkv)
    ensure_tiny_addons(engine.settings.cache_dir)
    assert engine.wait_ready(300)
    unet = engine.registry.get("turbo").text2img.unet
    assert any(type(p).__name__.startswith("Fused") for p in unet.attn_processors.values()) == fuse_qkv
    # The draft decoder in bfloat16, as float16 on a GPU: a NaN decode is retried in float32.
    decoder = engine.recipes.draft_decoder()
    decoder.to(torch.bfloat16)
    nan = NanOnce(torch.bfloat16)
    decoder.decoder.register_forward_hook(nan)

    plain = run(engine, draft()).images[0].png
    before, params = storage(engine), counts(engine)
    fingerprint = weights_fingerprint(unet)

    assert run(engine, draft(loras=(("tiny-ink", 1.0),))).images  # LoRA, fused QKV switched off for it
    assert run(engine, draft(loras=(("tiny-glow", 0.8),))).images  # evicts tiny-ink (LORA_LOADED_MAX=1)
    assert run(engine, draft(reference=reference_png(), reference_weight=0.8)).images  # attached and released
    assert run(engine, draft(tile=True)).images
    nan.armed = True
    retried = run(engine, draft(seed=6)).images[0].png  # NaN in bfloat16, decoded again in float32
    assert nan.fired == 1 and pixels(retried).shape == (SIDE, SIDE, 3)
    engine.recipes.free_memory()  # out of memory: LoRAs unloaded, the image encoder to host memory

    after = storage(engine)
    moved = sorted(name for name in before if after.get(name) != before[name])
    assert moved == [] and sorted(after) == sorted(before)
    assert weights_fingerprint(unet) == fingerprint
    assert counts(engine) == params  # no LoRA wrappers or weights left
    assert decoder.dtype == torch.bfloat16
    assert np.array_equal(pixels(run(engine, draft()).images[0].png), pixels(plain))


def test_one_nan_image_fails_its_own_job_and_its_batch_neighbours_are_delivered(make_engine):
    import concurrent.futures

    from engine.worker_loop import WorkerJob

    engine = make_engine()
    assert engine.wait_ready(300)
    decoder = engine.recipes.draft_decoder()
    alone = [run(engine, draft(seed=s)).images[0].png for s in (11, 12, 13, 14)]
    nan = NanOnce(decoder.dtype, row=2)
    decoder.decoder.register_forward_hook(nan)
    nan.armed = True
    # One batch of four jobs, as the worker runs a gathered burst (the idle worker thread waits meanwhile).
    jobs = [
        WorkerJob(f"job{s}", f"u{s}", draft(seed=s), concurrent.futures.Future(), None) for s in (11, 12, 13, 14)
    ]
    engine._execute(jobs)
    delivered, failed = [], []
    for job, want in zip(jobs, alone, strict=True):
        try:
            result = job.future.result(timeout=300)
        except JobFailed as exc:
            failed.append(str(exc))
            continue
        assert result.batch_size == 4  # the four ran as one batch
        delivered.append(result)
        assert np.abs(pixels(result.images[0].png) - pixels(want)).mean() < 1  # its own seed's image
    assert nan.fired == 1
    assert len(delivered) == 3 and failed == ["The model produced an invalid image (NaN). Try another seed or prompt."]


def test_a_nan_image_is_decoded_again_alone_in_float32_by_a_copy(tiny_cache_dir):
    """Only the bad image is decoded again, by a float32 copy of the decoder (made once): the decoder's own
    weights never move, and its neighbours keep their first decode."""
    from diffusers import AutoencoderTiny

    from engine.recipes.images import decode_each, float32_decoder
    from engine.tiny import tiny_root

    decoder = AutoencoderTiny.from_pretrained(tiny_root(tiny_cache_dir) / "taesdxl").to(torch.bfloat16).eval()
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    clean = decode_each(decoder, latents)
    before = weights_fingerprint(decoder)
    batches: list[tuple[int, torch.dtype]] = []  # (the hooks go with the copy: both are counted)
    decoder.decoder.register_forward_hook(lambda m, a, out: batches.append((out.shape[0], out.dtype)))
    nan = NanOnce(torch.bfloat16, row=1)
    decoder.decoder.register_forward_hook(nan)
    for _ in range(2):
        nan.armed = True
        images = decode_each(decoder, latents)
        assert [np.asarray(i).shape for i in images] == [(128, 128, 3)] * 3  # all three pictures
        assert np.array_equal(np.asarray(images[0]), np.asarray(clean[0]))
        assert np.array_equal(np.asarray(images[2]), np.asarray(clean[2]))
        assert np.abs(np.asarray(images[1], np.float32) - np.asarray(clean[1], np.float32)).mean() < 2
    # The decoder ran the batch in bfloat16; the retries were one image each, in float32, by one kept copy.
    assert batches == [(3, torch.bfloat16), (1, torch.float32)] * 2
    assert float32_decoder(decoder, latents.device) is float32_decoder(decoder, latents.device)
    assert weights_fingerprint(decoder) == before and decoder.dtype == torch.bfloat16


def test_graph_keys_tell_prompt_lengths_apart():
    """Long prompts are encoded in chunks of 77 tokens: 77 and 154 tokens are different graphs."""
    short = [torch.zeros(4, 4, 64, 64), torch.zeros(4, 77, 2048)]
    long = [torch.zeros(4, 4, 64, 64), torch.zeros(4, 154, 2048)]
    assert graph_key(short) != graph_key(long)
    assert graph_key(short) == graph_key([t.clone() for t in short])


def test_weights_fingerprint_sees_a_rebuilt_module_and_ignores_lora_weights():
    layer = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    first = weights_fingerprint(layer)
    assert weights_fingerprint(layer) == first
    layer[1] = torch.nn.Linear(4, 4)  # what fuse_qkv_projections() does to to_qkv
    assert weights_fingerprint(layer) != first
    again = weights_fingerprint(layer)
    layer.add_module("lora_A", torch.nn.ModuleDict({"x": torch.nn.Linear(4, 1)}))
    wrapped = torch.nn.Sequential()
    wrapped.add_module("inner", layer)
    assert weights_fingerprint(wrapped) == again


def test_out_of_memory_unloads_the_loras_and_sends_the_reference_encoder_to_host_memory(make_engine, monkeypatch):
    from engine.addons.tiny import ensure_tiny_addons
    from engine.api import FinalRequest

    engine = make_engine()
    ensure_tiny_addons(engine.settings.cache_dir)
    assert run(engine, draft(loras=(("tiny-ink", 1.0),))).images
    assert run(engine, draft(reference=reference_png(), reference_weight=0.8)).images
    pipe = engine.registry.get("turbo").text2img
    library, reference = engine.recipes.lora_library(), engine.recipes.reference_adapter()
    assert library.loaded(pipe) and reference.resident  # kept for the next job that wants them
    real, failures = engine.recipes.final, [torch.OutOfMemoryError("CUDA out of memory")]

    def oom_once(request, on_step=None, cancel=None):
        if failures:
            raise failures.pop()
        return real(request, on_step, cancel)

    monkeypatch.setattr(engine.recipes, "final", oom_once)
    assert run(engine, FinalRequest("a lighthouse", 1, width=SIDE, height=SIDE, steps=1)).images  # the retry
    assert library.loaded(pipe) == [] and not reference.resident


def test_a_full_size_sdxl_unet_is_unfused_and_fused_again_with_the_same_modules():
    """At real size (the published SDXL UNet, 140 attention layers, built on the meta device: no memory), twice
    in a row: the fused projections a CUDA graph reads are the same modules afterwards, and what the fused copy
    costs is what ENGINE_FUSE_QKV's comment says (+1.30 GB in float16)."""
    import json
    from pathlib import Path

    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention

    from engine.recipes.base import unfused

    config = json.loads((Path(__file__).parents[2] / "engine" / "architectures.json").read_text())["unet_sdxl"]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    unet.fuse_qkv_projections()
    layers = [m for m in unet.modules() if isinstance(m, Attention)]
    fused = {id(m): (getattr(m, "to_qkv", None), getattr(m, "to_kv", None)) for m in layers}
    extra = sum(p.numel() for m in layers for name in ("to_qkv", "to_kv") if hasattr(m, name)
                for p in getattr(m, name).parameters())
    assert len(layers) == 140 and round(extra * 2 / 1e9, 2) == 1.30
    for _ in range(2):
        with unfused(unet):
            assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0"}
        assert {type(p).__name__ for p in unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}
        assert {id(m): (getattr(m, "to_qkv", None), getattr(m, "to_kv", None)) for m in layers} == fused
