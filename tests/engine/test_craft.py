"""Prompt craft through the engine on the tiny preset: weighted prompts, seamless tiles, LoRAs, image
reference, chaos, upscale 2x and describe, each as a user would see it, and every job after them unchanged."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import (
    DescribeRequest,
    DraftRequest,
    FinalRequest,
    ImageInit,
    JobFailed,
    RequestError,
    UpscaleRequest,
)
from engine.output import read_parameters
from engine.worker import Engine

from .conftest import pixels, tiny_settings

SIDE = 256


@pytest.fixture(scope="module")
def engine(tiny_cache_dir):
    from engine.addons.tiny import ensure_tiny_addons

    ensure_tiny_addons(tiny_cache_dir)
    # Fused QKV on (ENGINE_FUSE_QKV): LoRA and reference jobs must unfuse and fuse back.
    engine = Engine(tiny_settings(tiny_cache_dir, fuse_qkv=True)).start()
    yield engine
    engine.shutdown(timeout=30)


def run(engine, request):
    return engine.submit(request, user="u").future.result(timeout=300)


def draft(prompt: str = "a red fox in snow", seed: int = 3, count: int = 1, **craft) -> DraftRequest:
    return DraftRequest(prompt, seed, width=SIDE, height=SIDE, count=count, **craft)


def final(prompt: str = "a red fox in snow", seed: int = 3, **craft) -> FinalRequest:
    return FinalRequest(prompt, seed, width=SIDE, height=SIDE, steps=4, **craft)


def changed(a: bytes, b: bytes) -> int:
    """Pixels that differ by more than float noise (the tiny random models saturate most of the picture)."""
    return int((np.abs(pixels(a) - pixels(b)).max(axis=2) > 2).sum())


def png_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def plain_png(engine) -> bytes:
    return run(engine, draft()).images[0].png


def assert_plain_jobs_unchanged(engine, plain_png):
    """A plain draft after a crafted job is the same picture as before it (the embedding cache may have
    encoded the prompt beside another text since, which moves floats by noise only)."""
    assert changed(run(engine, draft()).images[0].png, plain_png) == 0


# ---- weights and long prompts --------------------------------------------------------------------------


def test_plain_prompts_never_reach_compel_and_give_the_same_image(engine, plain_png, monkeypatch):
    from engine.prompts import WeightedPromptEncoder

    calls = []
    monkeypatch.setattr(WeightedPromptEncoder, "encode", lambda *a, **k: calls.append(a) or pytest.fail("compel"))
    engine.recipes.prompts.clear()
    assert run(engine, draft()).images[0].png == plain_png
    assert calls == []


def test_a_weighted_prompt_changes_the_draft_and_weight_one_equals_plain(engine, plain_png):
    pipe = engine.registry.get("turbo").text2img
    plain_embeds = engine.recipes.embeddings(pipe, ["a red fox in snow"])["prompt_embeds"]
    weighted_embeds = engine.recipes.embeddings(pipe, ["a (red fox:2.5) in snow"])["prompt_embeds"]
    neutral_embeds = engine.recipes.embeddings(pipe, ["a (red:1.0) fox in snow"])["prompt_embeds"]
    assert not torch.allclose(weighted_embeds, plain_embeds, atol=1e-3)
    assert torch.allclose(neutral_embeds, plain_embeds, atol=1e-5)
    weighted = run(engine, draft("a (red fox:2.5) in snow")).images[0]
    assert changed(weighted.png, plain_png) > 0
    neutral = run(engine, draft("a (red:1.0) fox in snow")).images[0]
    assert changed(neutral.png, plain_png) == 0  # float noise only
    assert read_parameters(weighted.png).splitlines()[0] == "a (red fox:2.5) in snow"  # the text as typed


def test_weighted_texts_are_cached_as_typed(engine):
    cache = engine.recipes.prompts
    cache.clear()
    runs = cache.encoder_runs
    run(engine, draft("a (blue:1.3) fox"))
    run(engine, draft("a (blue:1.3) fox", seed=9))
    assert cache.encoder_runs == runs + 1
    run(engine, draft("a (blue:1.31) fox"))
    assert cache.encoder_runs == runs + 2


def test_a_long_weighted_prompt_batches_with_a_short_one(engine):
    long_prompt = "a (red:1.2) fox, " + ", ".join(f"detail{i}" for i in range(90))
    jobs = [engine.submit(draft(long_prompt), user="a"), engine.submit(draft("a fox", seed=4), user="b")]
    results = [job.future.result(timeout=300) for job in jobs]
    assert all(len(r.images) == 1 for r in results)


def test_a_weighted_final_with_a_weighted_negative(engine):
    plain = run(engine, final(negative_prompt="blurry")).images[0]
    weighted = run(engine, final(negative_prompt="(blurry:1.5), BREAK ugly")).images[0]
    assert changed(weighted.png, plain.png) > 0


def test_a_long_weighted_sdxl_final_runs_base_and_refiner(engine):
    long_prompt = "a (red fox:1.4) in snow, " + ", ".join(f"detail{i}" for i in range(90))
    plain = run(engine, final(model="sdxl")).images[0]
    weighted = run(engine, final(long_prompt, model="sdxl", negative_prompt="[blurry]")).images[0]
    assert changed(weighted.png, plain.png) > 0
    assert read_parameters(weighted.png).startswith(long_prompt)


# ---- seamless tiles ------------------------------------------------------------------------------------


def test_a_tiled_draft_runs_with_circular_padding_and_restores_it(engine, plain_png):
    pipe = engine.registry.get("turbo").text2img
    decoder = engine.recipes.draft_decoder() or pipe.vae
    seen: list[str] = []
    hooks = [
        pipe.unet.conv_in.register_forward_pre_hook(lambda m, a: seen.append(("unet", m.padding_mode))),
        next(c for c in decoder.decoder.modules() if isinstance(c, torch.nn.Conv2d)).register_forward_pre_hook(
            lambda m, a: seen.append(("decoder", m.padding_mode))
        ),
    ]
    try:
        tiled = run(engine, draft(tile=True)).images[0]
    finally:
        for hook in hooks:
            hook.remove()
    assert ("unet", "circular") in seen and ("decoder", "circular") in seen
    assert all(mode == "circular" for _, mode in seen)
    assert tiled.png != plain_png
    assert "Tiling: True" in read_parameters(tiled.png)
    convs = [m for m in (*pipe.unet.modules(), *decoder.modules()) if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding_mode == "zeros" for m in convs)
    assert_plain_jobs_unchanged(engine, plain_png)


def test_a_tiled_sdxl_final_tiles_the_refiner_too(engine):
    refiner = engine.registry.get("sdxl-refiner").img2img
    seen: list[str] = []
    hook = refiner.unet.conv_in.register_forward_pre_hook(lambda m, a: seen.append(m.padding_mode))
    try:
        out = run(engine, final(model="sdxl", tile=True))
    finally:
        hook.remove()
    assert seen and set(seen) == {"circular"}
    assert refiner.unet.conv_in.padding_mode == "zeros"
    assert "Tiling: True" in read_parameters(out.images[0].png)


# ---- LoRAs -----------------------------------------------------------------------------------------------


def processors(engine, model: str = "turbo") -> set[str]:
    return {type(p).__name__ for p in engine.registry.get(model).text2img.unet.attn_processors.values()}


def test_a_lora_changes_the_draft_is_recorded_and_switched_off_after(engine, plain_png, monkeypatch):
    before = processors(engine)
    during: list[set[str]] = []
    loop = engine.recipes._turbo_loop
    def spy(*args, **kwargs):
        during.append(processors(engine))
        return loop(*args, **kwargs)

    monkeypatch.setattr(engine.recipes, "_turbo_loop", spy)
    with_lora = run(engine, draft(loras=(("tiny-glow", 1.5),))).images[0]
    monkeypatch.undo()
    # fused QKV projections would bypass the LoRA layers on to_q/to_k/to_v: unfused while it runs, fused after
    assert during and not any(name.startswith("Fused") for name in during[0])
    assert processors(engine) == before
    assert changed(with_lora.png, plain_png) > 0
    assert "Lora: tiny-glow:1.5" in read_parameters(with_lora.png)
    assert_plain_jobs_unchanged(engine, plain_png)


def test_two_stacked_loras_on_a_final(engine):
    plain = run(engine, final()).images[0]
    stacked = run(engine, final(loras=(("tiny-glow", 1.0), ("tiny-ink", -1.0)))).images[0]
    assert changed(stacked.png, plain.png) > 0
    assert "Lora: tiny-glow:1, Lora: tiny-ink:-1" in read_parameters(stacked.png)
    assert changed(run(engine, final()).images[0].png, plain.png) == 0


def test_unknown_lora_is_refused_at_submit(engine):
    with pytest.raises(RequestError, match="Unknown LoRA 'tiny-nope'"):
        engine.submit(draft(loras=(("tiny-nope", 1.0),)), user="u")


def test_drafts_with_different_loras_are_not_batched_together(engine):
    jobs = [
        engine.submit(draft(seed=1, loras=(("tiny-glow", 1.0),)), user="a"),
        engine.submit(draft(seed=1), user="b"),
    ]
    lora_result, plain_result = (job.future.result(timeout=300) for job in jobs)
    assert lora_result.batch_size == 1 and plain_result.batch_size == 1
    assert lora_result.images[0].png != plain_result.images[0].png


# ---- image reference -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_png() -> bytes:
    rng = np.random.default_rng(0)
    return png_of(rng.integers(0, 255, (96, 96, 3)))


@pytest.mark.parametrize("mode", ["full", "style"])
def test_a_reference_changes_the_draft_and_is_taken_off_after(engine, plain_png, reference_png, mode):
    from engine.addons.reference import ReferenceAdapter

    out = run(engine, draft(reference=reference_png, reference_weight=2.0, reference_mode=mode)).images[0]
    assert changed(out.png, plain_png) > 0
    assert f"IP-Adapter: {mode} 2" in read_parameters(out.png)
    assert not ReferenceAdapter.is_attached(engine.registry.get("turbo").text2img)
    assert processors(engine) == {"FusedAttnProcessor2_0"}  # fast kernels are back
    assert_plain_jobs_unchanged(engine, plain_png)


def test_a_reference_on_finals_and_image_to_image_drafts(engine, reference_png, plain_png):
    plain = run(engine, final()).images[0]
    referenced = run(engine, final(reference=reference_png, reference_weight=2.0)).images[0]
    assert referenced.png != plain.png
    sdxl = run(engine, final(model="sdxl", reference=reference_png)).images[0]  # base pass only
    assert sdxl.width == SIDE
    varied = run(engine, draft(init=ImageInit(plain_png), steps=2, reference=reference_png)).images[0]
    assert varied.width == SIDE


def test_an_inpaint_with_every_craft_field(engine, reference_png, plain_png):
    mask = np.zeros((SIDE, SIDE, 3))
    mask[64:192, 64:192] = 255
    request = final(init=ImageInit(plain_png), mask=png_of(mask), strength=1.0, tile=True,
                    loras=(("tiny-glow", 1.0),), reference=reference_png)
    out = run(engine, request).images[0]
    assert (out.width, out.height) == (SIDE, SIDE)
    assert "Tiling: True, Lora: tiny-glow:1, IP-Adapter: full 0.5" in read_parameters(out.png)
    assert processors(engine, "ssd-1b") == {"FusedAttnProcessor2_0"}
    assert_plain_jobs_unchanged(engine, plain_png)


# ---- chaos ---------------------------------------------------------------------------------------------


def test_chaos_drafts_use_the_spread_seeds_and_strengths(engine, plain_png):
    calm = run(engine, draft(count=2))
    wild = run(engine, draft(count=2, chaos=60))
    assert [i.seed for i in wild.images] == list(wild.request.seeds) != [i.seed for i in calm.images]
    assert wild.images[0].png != calm.images[1].png
    assert "Chaos: 60" in read_parameters(wild.images[1].png)
    start = ImageInit(plain_png)
    varied = run(engine, draft(count=2, init=start, steps=4, strength=0.5, chaos=100))
    strengths = [read_parameters(i.png).split("Denoising strength: ")[1].split(",")[0] for i in varied.images]
    assert [float(s) for s in strengths] == list(varied.request.strengths)
    assert len(set(strengths)) == 2


# ---- upscale and describe ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["subtle", "creative"])
def test_upscale_doubles_a_final_and_stays_close_to_it(engine, mode):
    source = run(engine, final()).images[0]
    result = run(engine, UpscaleRequest(source.png, mode=mode, seed=3))
    (big,) = result.images
    assert (big.width, big.height) == (2 * SIDE, 2 * SIDE)
    with Image.open(io.BytesIO(big.png)) as img:
        shrunk = np.asarray(img.convert("RGB").resize((SIDE, SIDE), Image.LANCZOS), dtype=np.float32)
    assert np.abs(shrunk - pixels(source.png)).mean() < (12 if mode == "subtle" else 40)
    text = read_parameters(big.png)
    assert text.startswith("a red fox in snow") and "Hires upscale: 2" in text and f"Upscale mode: {mode}" in text


def test_upscale_refuses_what_it_cannot_take(engine):
    with pytest.raises(RequestError, match="upscale takes images up to 2048 px"):
        engine.submit(UpscaleRequest(png_of(np.zeros((8, 2100, 3)))), user="u")


def test_describe_gives_suggestions_and_no_images(engine, plain_png):
    result = run(engine, DescribeRequest(plain_png))
    assert result.images == () and 3 <= len(result.suggestions) <= 4
    assert all(isinstance(s, str) and s for s in result.suggestions)
    with pytest.raises(RequestError, match="image to describe is not an image"):
        engine.submit(DescribeRequest(b"not an image"), user="u")


def test_a_broken_reference_fails_the_job_with_words_for_users(engine, monkeypatch):
    from engine.addons import reference

    def broken(data):
        raise reference.ReferenceImageError("The reference image is too large (9000x9000).")

    monkeypatch.setattr(reference, "load_reference_image", broken)
    job = engine.submit(draft(reference=png_of(np.zeros((8, 8, 3)))), user="u")
    with pytest.raises(JobFailed, match="too large"):
        job.future.result(timeout=300)


# ---- the offer -------------------------------------------------------------------------------------------


def test_the_local_engine_offers_its_add_ons(tiny_cache_dir):
    from engine.local import LocalEngine

    async def main():
        local = LocalEngine(tiny_settings(tiny_cache_dir))
        assert local.offer.loras == () and not local.offer.reference
        await local.start()
        try:
            return local.offer
        finally:
            await local.close()

    offer = asyncio.run(main())
    assert offer.loras == ("tiny-glow", "tiny-ink")
    assert offer.reference and offer.describe and offer.upscaler == "tiny-realesrgan-x4"
