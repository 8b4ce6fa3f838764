"""SDXL Turbo's text-to-image loop (guidance 0) with no host-device sync between the start of a batch and its decode.

What ``StableDiffusionXLPipeline.__call__`` and ``EulerAncestralDiscreteScheduler.step`` do, in the same
order and with the same tensors, so the pixels are those of the stock loop for the same seeds, but:

- all the noise of a batch (the start latents and every ancestral step but the last, whose ``sigma_up``
  is 0) is drawn up front, per image from its own CPU generator in the order the stock loop draws it,
  into one pinned host tensor copied to the device once, without blocking;
- the timesteps and the scheduler's per-step constants (sigma, the input scale, dt, ``sigma_up``) are
  device tensors made once per (step count, device); the time ids once per (size, batch, device).

Other schedulers (a Turbo folder with another one) run the stock step, which draws its noise per step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from diffusers import EulerAncestralDiscreteScheduler


@dataclass(frozen=True)
class Schedule:
    """Euler ancestral's constants for one step count, on the device (0-dim tensors, as the scheduler makes them)."""

    timesteps: torch.Tensor
    init_sigma: torch.Tensor
    sigmas: tuple[torch.Tensor, ...]  # per step
    scales: tuple[torch.Tensor, ...]  # (sigma**2 + 1) ** 0.5: the model input is latents / scale
    dts: tuple[torch.Tensor, ...]  # sigma_down - sigma
    ups: tuple[torch.Tensor, ...]  # sigma_up: the share of fresh noise (0 on the last step)


def euler_ancestral(scheduler) -> bool:
    """Whether the loop can run ``scheduler``'s step itself (Euler ancestral, epsilon prediction)."""
    if not isinstance(scheduler, EulerAncestralDiscreteScheduler):
        return False
    return getattr(scheduler, "config").prediction_type == "epsilon"  # noqa: B009 (config is set at run time)


def make_schedule(scheduler, steps: int, device: torch.device) -> Schedule:
    """The constants of ``steps`` steps: a fresh copy of the scheduler sets its timesteps (``scheduler`` is left alone),
    then every value is computed on ``device`` by the formulas of ``EulerAncestralDiscreteScheduler.step``."""
    fresh = type(scheduler).from_config(scheduler.config)
    fresh.set_timesteps(steps, device=device)
    s = fresh.sigmas
    sigmas, scales, dts, ups = [], [], [], []
    for i in range(len(fresh.timesteps)):
        sigma_from, sigma_to = s[i], s[i + 1]
        sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        sigmas.append(sigma_from)
        scales.append((sigma_from**2 + 1) ** 0.5)
        dts.append(sigma_down - sigma_from)
        ups.append(sigma_up)
    init = fresh.init_noise_sigma
    init_sigma = init if isinstance(init, torch.Tensor) else torch.tensor(init, device=device)
    return Schedule(fresh.timesteps, init_sigma.to(device), tuple(sigmas), tuple(scales), tuple(dts), tuple(ups))


def draw_noise(seeds: list[int], draws: int, shape: tuple[int, ...], dtype: torch.dtype, pin: bool) -> torch.Tensor:
    """``draws`` noise tensors per image, ``[draw, image, *shape]``, image ``i`` from a CPU generator seeded with
    ``seeds[i]`` drawing in the stock order (start latents first, then one per step); pinned when ``pin``."""
    noise = torch.empty((draws, len(seeds), *shape), dtype=dtype, pin_memory=pin)
    for i, seed in enumerate(seeds):
        generator = torch.Generator("cpu").manual_seed(int(seed))
        for k in range(draws):
            noise[k, i].copy_(torch.randn((1, *shape), generator=generator, dtype=dtype)[0])
    return noise


class TurboLoop:
    """The draft loop of one Turbo pipeline, with its schedules and time ids cached."""

    def __init__(self) -> None:
        self._schedules: dict[tuple, Schedule] = {}
        self._time_ids: dict[tuple, torch.Tensor] = {}

    def schedule(self, scheduler, steps: int, device: torch.device) -> Schedule:
        key = (id(scheduler), steps, str(device))
        if key not in self._schedules:
            self._schedules[key] = make_schedule(scheduler, steps, device)
        return self._schedules[key]

    def time_ids(self, pipe, width: int, height: int, n: int, dtype, projection: int, device) -> torch.Tensor:
        key = (width, height, n, dtype, projection, str(device))
        if key not in self._time_ids:
            ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), dtype, projection)
            self._time_ids[key] = ids.to(device).repeat(n, 1)
        return self._time_ids[key]

    def run(
        self,
        pipe,
        embeds: dict[str, torch.Tensor],
        seeds: list[int],
        width: int,
        height: int,
        steps: int,
        cancel: threading.Event | None,
        unet_fn,
        before_step=None,
        mark_inputs=None,
    ) -> torch.Tensor:
        """The latents of ``seeds`` after ``steps`` Turbo steps. ``unet_fn(x, t, prompt_embeds, added)`` runs the
        UNet (eagerly or through a graph); ``before_step(model_input)`` and ``mark_inputs(*tensors)`` serve
        compiled graphs (the dynamic batch dimension, the step boundary)."""
        scheduler = pipe.scheduler
        device = pipe._execution_device
        prompt_embeds = embeds["prompt_embeds"]
        dtype = prompt_embeds.dtype
        n = prompt_embeds.shape[0]
        shape = (pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        projection = int(embeds["pooled_prompt_embeds"].shape[-1])
        time_ids = self.time_ids(pipe, width, height, n, dtype, projection, device)
        added = {"text_embeds": embeds["pooled_prompt_embeds"], "time_ids": time_ids}
        if "image_embeds" in embeds:  # the IP-Adapter's image embedding (a reference)
            added["image_embeds"] = embeds["image_embeds"]
        if mark_inputs is not None:
            mark_inputs(prompt_embeds, added["text_embeds"], time_ids)
        if not euler_ancestral(scheduler):
            return self._stock(pipe, prompt_embeds, added, seeds, shape, steps, cancel, unet_fn, before_step)
        plan = self.schedule(scheduler, steps, device)
        pinned = torch.device(device).type == "cuda"
        noise = draw_noise(seeds, len(plan.timesteps), shape, dtype, pinned).to(device, non_blocking=True)
        latents = noise[0] * plan.init_sigma
        last = len(plan.timesteps) - 1
        for k, t in enumerate(plan.timesteps):
            if cancel is not None and cancel.is_set():
                break
            model_input = latents / plan.scales[k]
            if before_step is not None:
                before_step(model_input)
            eps = unet_fn(model_input, t, prompt_embeds, added)
            # EulerAncestralDiscreteScheduler.step, term for term (float32 in between, as it upcasts).
            sample = latents.to(torch.float32)
            pred_original = sample - plan.sigmas[k] * eps
            derivative = (sample - pred_original) / plan.sigmas[k]
            prev = sample + derivative * plan.dts[k]
            if k < last:  # the last step's sigma_up is 0: no noise
                prev = prev + noise[k + 1] * plan.ups[k]
            latents = prev.to(eps.dtype)
        return latents

    @staticmethod
    def _stock(pipe, prompt_embeds, added, seeds, shape, steps, cancel, unet_fn, before_step) -> torch.Tensor:
        """Any other scheduler: its own ``set_timesteps`` and ``step`` (noise drawn per step from the generators)."""
        from diffusers.utils.torch_utils import randn_tensor

        from .images import generators

        scheduler, device = pipe.scheduler, pipe._execution_device
        gens = generators(seeds)
        scheduler.set_timesteps(steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        latents = randn_tensor((len(seeds), *shape), generator=gens, device=device, dtype=prompt_embeds.dtype)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            if cancel is not None and cancel.is_set():
                break
            model_input = scheduler.scale_model_input(latents, t)
            if before_step is not None:
                before_step(model_input)
            eps = unet_fn(model_input, t, prompt_embeds, added)
            latents = scheduler.step(eps, t, latents, generator=gens, return_dict=False)[0]
        return latents
