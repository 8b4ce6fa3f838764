"""The fast path (issue 10): batches that form, prompt embeddings cached, the cheap draft decoder, guidance
cut-off, fused kernels and compiled graphs. Each test checks what the setting promises a user."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from engine.models import ModelRegistry
from engine.requests import DraftInit, DraftRequest, FinalRequest
from engine.settings import TAESDXL, VAE_FP16_FIX, EngineSettings
from engine.tiny import tiny_root
from engine.weights import missing_models

from .conftest import compiled_matches_eager, pixels, tiny_settings

SIDE = 256  # small drafts keep the suite quick; the batching and caching do not depend on size


def run(engine, request, user="u"):
    return engine.submit(request, user=user).future.result(timeout=120)


def count_calls(module) -> list[int]:
    """Batch sizes ``module`` is called with, from now on."""
    sizes: list[int] = []
    module.register_forward_hook(lambda mod, args, kwargs, out: sizes.append(int(args[0].shape[0])), with_kwargs=True)
    return sizes


def draft(prompt: str, seed: int, count: int = 1) -> DraftRequest:
    return DraftRequest(prompt, seed, width=SIDE, height=SIDE, count=count)


# ---- 1. batches that form ---------------------------------------------------------------------------


def test_a_burst_of_16_one_image_drafts_runs_as_one_batch_each_as_it_would_alone(make_engine):
    engine = make_engine(gather_ms=300)
    prompts = [f"a lighthouse, take {i}" for i in range(16)]
    alone = {p: pixels(run(engine, draft(p, 100 + i)).images[0].png) for i, p in enumerate(prompts)}
    # The burst comes while the worker is busy (a lone draft on an idle engine starts at once), so they gather.
    before = DraftRequest("the draft before", 99, width=SIDE + 64, height=SIDE, count=4)  # not of the burst's shape
    busy = engine.submit(before, user="user-0")
    handles = [engine.submit(draft(p, 100 + i), user=f"user-{i}") for i, p in enumerate(prompts)]
    busy.future.result(timeout=120)
    results = [h.future.result(timeout=120) for h in handles]
    assert [r.batch_size for r in results] == [16] * 16
    for prompt, result in zip(prompts, results, strict=True):
        diff = np.abs(pixels(result.images[0].png) - alone[prompt])
        assert diff.mean() <= 0.5 and diff.max() <= 8, prompt


def test_without_a_gather_window_a_lone_draft_is_not_held_back(make_engine):
    engine = make_engine(gather_ms=0)
    run(engine, draft("warm-up", 1))
    started = time.monotonic()
    result = run(engine, draft("a fox", 2))
    assert result.batch_size == 1
    assert result.timings["queued"] < 0.25, result.timings
    assert time.monotonic() - started < 30


def test_the_default_batch_holds_a_burst_of_16():
    settings = EngineSettings()
    assert settings.max_batch_images >= 16 and 0 < settings.gather_ms <= 20
    assert [settings.batch_bucket(n) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]


# ---- 2. text encoders run once per prompt ---------------------------------------------------------------


def test_reroll_variation_and_upscale_of_a_prompt_do_not_run_the_text_encoders_again(make_engine):
    engine = make_engine(final_steps=2)
    first = draft("a red fox in snow", 5, count=2)
    run(engine, first)
    encoder = engine.registry.get("turbo").text2img.text_encoder_2
    engine.registry.get("ssd-1b")
    assert engine.registry.shares("turbo", "ssd-1b", "text_encoder_2")
    calls = count_calls(encoder)
    run(engine, draft("a red fox in snow", 77, count=2))  # 🔁 reroll: new seeds
    variation = DraftRequest("a red fox in snow", 9, width=SIDE, height=SIDE, steps=2, init=DraftInit(first, 1))
    run(engine, variation)  # V2
    run(engine, FinalRequest("a red fox in snow", 5, width=SIDE, height=SIDE, init=DraftInit(first, 0)))  # U1
    assert calls == []
    run(engine, draft("a grey wolf", 5))  # another prompt: encoded once
    assert calls == [1]


def test_a_batch_encodes_each_distinct_prompt_once(make_engine):
    engine = make_engine()
    recipes = engine.recipes
    pipe = engine.registry.get("turbo").text2img
    calls = count_calls(pipe.text_encoder)
    images = recipes.drafts([draft("an owl", 1), draft("an owl", 2, count=2), draft("a cat", 4)])
    assert [len(i) for i in images] == [1, 2, 1]
    assert calls == [2]  # one run of the encoder over the two distinct prompts
    recipes.drafts([draft("a cat", 8), draft("an owl", 9)])
    assert calls == [2]


def test_cached_embeddings_make_the_same_images_as_encoding_every_time(make_engine):
    cached = make_engine()
    uncached = make_engine(prompt_cache_size=0)
    request = draft("a teapot on a table", 3, count=2)
    run(cached, request)  # fills the cache
    a = run(cached, request)
    b = run(uncached, request)
    for x, y in zip(a.images, b.images, strict=True):
        assert np.abs(pixels(x.png) - pixels(y.png)).max() <= 1


def test_a_negative_prompt_changes_a_final_and_an_empty_one_is_the_stock_zeros(make_engine):
    engine = make_engine(final_steps=2)
    plain = FinalRequest("a bowl of fruit", 4, width=SIDE, height=SIDE)
    negative = FinalRequest("a bowl of fruit", 4, width=SIDE, height=SIDE, negative_prompt="apples")
    a, b = pixels(run(engine, plain).images[0].png), pixels(run(engine, negative).images[0].png)
    assert np.abs(a - b).mean() > 0.5
    again = pixels(run(engine, plain).images[0].png)
    assert np.abs(a - again).max() <= 1


# ---- 3. the cheap draft decoder ---------------------------------------------------------------------------


def test_drafts_decode_with_taesdxl_and_finals_with_the_full_vae(make_engine):
    engine = make_engine(final_steps=2, preview_every=1)
    run(engine, draft("a boat", 1))
    decoder = engine.recipes.draft_decoder()
    assert type(decoder).__name__ == "AutoencoderTiny"
    assert str(decoder.config["_name_or_path"]) == str(tiny_root(engine.settings.cache_dir) / "taesdxl")
    tiny_decodes = count_calls(decoder.decoder)
    full_vae = engine.registry.get("ssd-1b").img2img.vae
    full_decodes = count_calls(full_vae.decoder)
    run(engine, draft("a boat", 2, count=2))
    assert tiny_decodes == [2] and full_decodes == []
    previews = []
    final = FinalRequest("a boat", 3, width=SIDE, height=SIDE, steps=3)
    handle = engine.submit(final, user="u", on_progress=lambda p: previews.append(p.preview))
    handle.future.result(timeout=120)
    assert [p is not None for p in previews] == [True, True, False]  # live previews, not the last step
    assert tiny_decodes == [2, 1, 1] and full_decodes == [1]  # previews: TAESDXL; the final itself: the VAE


def test_draft_decoder_full_is_one_setting_away(make_engine):
    tiny = make_engine()
    full = make_engine(draft_decoder="full")
    a = pixels(run(tiny, draft("a mountain", 6)).images[0].png)
    b = pixels(run(full, draft("a mountain", 6)).images[0].png)
    assert full.recipes.draft_decoder() is None
    # Both decode the same latents; the tiny preset's TAESDXL stands in for the VAE, so they look alike.
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.7
    assert np.abs(a - b).mean() > 0.5


def test_decoders_that_are_not_downloaded_are_fetched_and_meanwhile_drafts_use_the_vae(make_engine, tiny_cache_dir):
    root = tiny_root(tiny_cache_dir)
    settings = EngineSettings.for_preset(
        "sdxl",
        cache_dir=tiny_cache_dir,
        device="cpu",
        turbo_model=str(root / "turbo"),
        ssd1b_model=str(root / "ssd-1b"),
        vae_model="imagine-bot-tests/no-such-vae",
        draft_vae_model="imagine-bot-tests/no-such-taesd",
    )
    assert missing_models(settings, ["turbo", "ssd-1b"]) == ["vae", "draft-decoder"]
    engine = make_engine(vae_model=settings.vae_model, draft_vae_model=settings.draft_vae_model)
    result = run(engine, draft("a kite", 1))
    assert pixels(result.images[0].png).std() > 1
    assert engine.recipes.draft_decoder() is None


def test_real_weights_default_to_taesdxl_drafts_and_the_fp16_fix_vae():
    settings = EngineSettings()
    assert (settings.draft_vae_model, settings.draft_decoder, settings.vae_model) == (TAESDXL, "tiny", VAE_FP16_FIX)
    env = EngineSettings.from_env({"DRAFT_DECODER": "full", "VAE_MODEL": "none", "ENGINE_COMPILE": "auto"})
    assert (env.draft_decoder, env.vae_model, env.compile) == ("full", "", None)
    assert not EngineSettings().compile_on("cuda") and not EngineSettings().compile_on("cpu")  # opt-in (issue 19)


# ---- 5. less work per call -----------------------------------------------------------------------------------


def test_fast_kernels_make_the_same_drafts(make_engine):
    fast = make_engine(fuse_qkv=True)
    plain = make_engine(fast_kernels=False)
    unet = fast.registry.get("turbo").text2img.unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    processors = {type(p).__name__ for p in unet.attn_processors.values()}
    assert processors == {"FusedAttnProcessor2_0"}
    assert {type(p).__name__ for p in plain.registry.get("turbo").text2img.unet.attn_processors.values()} == {
        "AttnProcessor2_0"
    }
    a = run(fast, draft("a bridge at night", 12, count=2))
    b = run(plain, draft("a bridge at night", 12, count=2))
    for x, y in zip(a.images, b.images, strict=True):
        assert np.abs(pixels(x.png) - pixels(y.png)).max() <= 1


def test_each_job_reports_its_stage_times(make_engine):
    engine = make_engine(final_steps=2)
    d = run(engine, draft("a lamp", 1))
    f = run(engine, FinalRequest("a lamp", 1, width=SIDE, height=SIDE))
    for result in (d, f):
        assert {"text", "unet", "decode"} <= set(result.timings), result.timings
        assert sum(result.timings[k] for k in ("text", "unet", "decode")) <= result.timings["run"] + 0.01


# ---- 7. finals: guidance cut-off ------------------------------------------------------------------------------


def test_guidance_cutoff_drops_the_unconditional_batch_for_the_last_steps(make_engine):
    guided = make_engine()
    cut = make_engine(guidance_cutoff=0.5)
    request = FinalRequest("a garden", 8, width=SIDE, height=SIDE, steps=4, guidance=7.0)
    a = pixels(run(guided, request).images[0].png)
    sizes = count_calls(cut.registry.get("ssd-1b").text2img.unet)
    b = pixels(run(cut, request).images[0].png)
    assert sizes == [2, 2, 1, 1]
    assert np.abs(a - b).mean() > 0.1  # it changes the image (a setting, off by default)
    assert EngineSettings().guidance_cutoff == 0.0


# ---- 6. compiled graphs ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_drafts_match_eager_and_never_recompile_across_buckets(make_engine):
    """Dynamo's graphs and guards (the part that decides recompiles) from bucket 1 to 16: 1 is a graph of
    its own, 2 to 16 share the dynamic batch one (8 would prove nothing 4 and 16 do not; 3 pads to 4).

    Inductor's own kernels are checked where they are used, on CUDA (tests/engine/test_gpu.py): the CPU
    never compiles by default, and an inductor build of the tiny UNet took two minutes of CI here."""
    torch._dynamo.reset()
    compiled_matches_eager(make_engine, "aot_eager", (1, 2, 4, 16), tol=0.5, side=SIDE)


def test_offload_mode_never_compiles(tiny_cache_dir):
    settings = tiny_settings(tiny_cache_dir, compile=True)
    assert ModelRegistry(settings, "cpu", torch.float32, "resident").compiled
    assert not ModelRegistry(settings, "cpu", torch.float32, "offload").compiled
