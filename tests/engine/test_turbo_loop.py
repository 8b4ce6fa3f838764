"""The Turbo draft loop without host syncs (issue 19, item 4): the pixels of the stock loop for the same seeds."""

from __future__ import annotations

import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from engine.recipes.images import generators
from engine.requests import DraftRequest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def stock_turbo_loop(pipe, embeds, seeds, width, height, steps):
    """The loop as it was before issue 19 (engine/recipes/drafts.py ``_turbo_loop``, eager, plain): kept here as
    the reference. The scheduler draws its noise per step from the per-image generators."""
    unet, scheduler = pipe.unet, pipe.scheduler
    device = pipe._execution_device
    prompt_embeds = embeds["prompt_embeds"]
    dtype = prompt_embeds.dtype
    n = prompt_embeds.shape[0]
    gens = generators(seeds)
    scheduler.set_timesteps(steps, device=device)
    scheduler.set_begin_index(0)
    shape = (n, unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    latents = randn_tensor(shape, generator=gens, device=device, dtype=dtype) * scheduler.init_noise_sigma
    projection = int(embeds["pooled_prompt_embeds"].shape[-1])
    time_ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), dtype, projection)
    added = {"text_embeds": embeds["pooled_prompt_embeds"], "time_ids": time_ids.to(device).repeat(n, 1)}
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        noise = unet(model_input, t, encoder_hidden_states=prompt_embeds, added_cond_kwargs=added, return_dict=False)[0]
        latents = scheduler.step(noise, t, latents, generator=gens, return_dict=False)[0]
    return latents


@pytest.fixture(scope="module")
def turbo(shared_engine):
    recipes = shared_engine.recipes
    with torch.inference_mode():
        pipe = shared_engine.registry.get("turbo").text2img
    return recipes, pipe


@pytest.mark.parametrize(("steps", "width", "height"), [(1, 256, 256), (2, 256, 192), (4, 192, 256)])
def test_the_sync_free_loop_makes_the_stock_loops_latents_bit_for_bit(turbo, steps, width, height):
    recipes, pipe = turbo
    prompts, seeds = ["a fox", "a fox", "an owl"], [7, 8, 1234]
    with torch.inference_mode():
        embeds = recipes.embeddings(pipe, prompts)
        want = stock_turbo_loop(pipe, embeds, seeds, width, height, steps)
        got = recipes._turbo_loop(pipe, embeds, seeds, width, height, steps, None)
        again = recipes._turbo_loop(pipe, embeds, seeds, width, height, steps, None)  # cached schedule, time ids
    assert torch.equal(got, want)
    assert torch.equal(again, want)


def test_each_image_keeps_its_seeds_noise_in_any_batch(turbo):
    recipes, pipe = turbo
    with torch.inference_mode():
        both = recipes._turbo_loop(pipe, recipes.embeddings(pipe, ["a", "b"]), [5, 6], 256, 256, 3, None)
        alone = recipes._turbo_loop(pipe, recipes.embeddings(pipe, ["b"]), [6], 256, 256, 3, None)
    torch.testing.assert_close(both[1:], alone, rtol=1e-4, atol=1e-3)  # batch matmuls: float noise only


def test_another_scheduler_runs_its_own_step(shared_engine, turbo):
    recipes, pipe = turbo
    euler = pipe.scheduler
    pipe.scheduler = EulerDiscreteScheduler.from_config(euler.config)
    try:
        with torch.inference_mode():
            embeds = recipes.embeddings(pipe, ["a kite"])
            want = stock_turbo_loop(pipe, embeds, [3], 256, 256, 2)
            got = recipes._turbo_loop(pipe, embeds, [3], 256, 256, 2, None)
    finally:
        pipe.scheduler = euler
    assert torch.equal(got, want)


@pytest.mark.gpu
def test_the_turbo_loop_never_syncs_with_the_host(tiny_cache_dir):
    """Between the start of a batch and its decode nothing waits for the GPU: torch raises on any sync.
    Eager and graphed (after the capture, which syncs, is done)."""
    from engine.settings import EngineSettings
    from engine.worker import Engine

    for graphs in (False, True):
        settings = EngineSettings.for_preset(
            "tiny", cache_dir=tiny_cache_dir, device="cuda", preload=False, cuda_graphs=graphs
        )
        engine = Engine(settings).start()
        try:
            recipes = engine.recipes
            with recipes.capturing():  # loads, captures (the worker's jobs never do), fills the caches
                recipes.drafts([DraftRequest("warm-up", 1, count=4, steps=2)])
            with torch.inference_mode():
                pipe = engine.registry.get("turbo").text2img
                embeds = recipes.embeddings(pipe, ["a fox"] * 4)
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    latents = recipes._turbo_loop(pipe, embeds, [1, 2, 3, 4], 512, 512, 2, None)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            assert torch.isfinite(latents).all()
        finally:
            engine.shutdown(30)


def test_a_batch_draws_no_noise_for_the_last_step_and_sets_up_its_schedule_once(turbo, monkeypatch):
    """Noise per image: the start latents and each step but the last (sigma_up is 0 there); the timesteps and
    time ids of a (size, steps, batch) are made once, not on every batch (each was a host-to-device copy)."""
    recipes, pipe = turbo
    draws, setups, time_ids = [], [], []
    randn, set_timesteps, get_ids = torch.randn, type(pipe.scheduler).set_timesteps, pipe._get_add_time_ids
    monkeypatch.setattr(torch, "randn", lambda *a, **k: draws.append(1) or randn(*a, **k))
    monkeypatch.setattr(
        type(pipe.scheduler), "set_timesteps", lambda s, *a, **k: setups.append(1) or set_timesteps(s, *a, **k)
    )
    monkeypatch.setattr(pipe, "_get_add_time_ids", lambda *a, **k: time_ids.append(1) or get_ids(*a, **k))
    with torch.inference_mode():
        embeds = recipes.embeddings(pipe, ["a heron", "a crane"])
        for _ in range(3):
            draws.clear()
            recipes._turbo_loop(pipe, embeds, [11, 12], 320, 256, 4, None)
            assert len(draws) == 2 * 4  # 2 images x (start + 3 steps); the stock loop drew 2 x 5
    assert len(setups) <= 1 and len(time_ids) <= 1
