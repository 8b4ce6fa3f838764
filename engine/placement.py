"""``ENGINE_MEMORY=offload``: Turbo holds the GPU between finals and leaves it while a final runs.

Turbo's UNet (5.1 GB in fp16) and SSD-1B's (2.7 GB) do not fit an 8 GB card together with a context,
text encoders and activations (``engine.memory``; docs/PERFORMANCE.md). So in ``offload`` mode the final
models run under accelerate's model offload (one component on the GPU at a time), and the first time a
final's component is about to run (a forward pre-hook on each), Turbo's modules move to the host: its
UNet, text encoders and VAE; TAESDXL (5 MB) stays. The CUDA graphs of the draft path are dropped first
(their pools would otherwise stay reserved, and they hold pointers to the weights that move). The next
``ModelRegistry.get("turbo")`` (the next draft; the idle worker does not capture while Turbo is away)
moves the final models' modules off and Turbo back; its graphs are captured again while the queue is idle
after that draft. Resident mode never moves anything.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

HOST = "cpu"
VAE_TILE_PX = 512  # offload mode: the full VAE encodes and decodes larger images in tiles of this size


def modules_of(pipe: Any) -> list[Any]:
    """The torch modules of a pipeline (text encoders, UNet, VAE, ...), each once."""
    import torch

    seen: dict[int, Any] = {}
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            seen.setdefault(id(module), module)
    return list(seen.values())


def _device_of(module: Any) -> str | None:
    for tensor in module.parameters():
        return str(tensor.device)
    return None


class Placement:
    """Where the draft model's and the final models' modules are, in ``offload`` mode."""

    def __init__(self, device: str, memory: str):
        self.device = device
        self.enabled = memory == "offload"
        self.drafts_away = False  # Turbo's modules were moved to the host for a final
        # (what, "host" | "device") of the last moves, for tests and debugging
        self.moves: collections.deque[tuple[str, str]] = collections.deque(maxlen=32)
        self._before_eviction: list[Callable[[], None]] = []

    def before_eviction(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` before Turbo leaves the device (the recipes drop their CUDA graphs)."""
        self._before_eviction.append(fn)

    def guard(self, pipe: Any, make_room: Callable[[], None]) -> None:
        """Make room (``make_room()``) before any module of an offloaded final pipeline runs."""
        for module in modules_of(pipe):
            module.register_forward_pre_hook(lambda *_: make_room())

    def _move(self, what: str, modules: Iterable[Any], to_host: bool) -> int:
        """Move the modules not yet there; every call is recorded as (what, "host" or "device") (on a
        CPU-only machine the device and the host are one, so the record is what tests read)."""
        where = HOST if to_host else self.device
        import torch

        moved = 0
        for module in modules:
            device = _device_of(module)
            if device is not None and device != where and not (where != HOST and device.startswith(where)):
                with torch.inference_mode(False):  # moves happen inside recipes: weights stay normal tensors
                    module.to(where)
                moved += 1
        self.moves.append((what, "host" if to_host else "device"))
        return moved

    def evict_drafts(self, turbo_pipe: Any | None) -> None:
        """Turbo leaves the device (its graphs first); nothing when it already left or in resident mode."""
        if not self.enabled or self.drafts_away or turbo_pipe is None:
            return
        started = time.perf_counter()
        for fn in self._before_eviction:
            fn()
        self._move("turbo", modules_of(turbo_pipe), to_host=True)
        self.drafts_away = True
        _empty_cache(self.device)
        log.info("offload: Turbo moved off %s for a final in %.2fs", self.device, time.perf_counter() - started)

    def restore_drafts(self, turbo_pipe: Any, finals: dict[str, Any]) -> None:
        """The final models' modules leave the device, Turbo's come back (also any module of Turbo that a
        final's offload hooks moved: the shared fp16-fix VAE)."""
        if not self.enabled:
            return
        turbo_modules = modules_of(turbo_pipe)
        if not self.drafts_away and all(_device_of(m) in (None, *self._device_names()) for m in turbo_modules):
            return  # the usual case: Turbo is where drafts need it
        started = time.perf_counter()
        turbo_ids = {id(m) for m in turbo_modules}
        final_modules = [m for pipe in finals.values() for m in modules_of(pipe) if id(m) not in turbo_ids]
        self._move("finals", final_modules, to_host=True)
        _empty_cache(self.device)
        self._move("turbo", turbo_modules, to_host=False)
        self.drafts_away = False
        log.info("offload: Turbo on %s again in %.2fs", self.device, time.perf_counter() - started)

    def _device_names(self) -> tuple[str, ...]:
        return (self.device, f"{self.device}:0") if ":" not in self.device else (self.device,)


def tile_vae(vae: Any, px: int = VAE_TILE_PX) -> None:
    """Encode and decode images larger than ``px`` in ``px`` tiles (a quarter overlapping, blended):
    a 1024 px decode peaks at about 0.41 GB of activations instead of 1.61 GB (3.2 GB in float32)."""
    if vae is None or not hasattr(vae, "enable_tiling") or not hasattr(vae, "tile_latent_min_size"):
        return  # AutoencoderTiny and others: no tiles needed
    vae.enable_tiling()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.tile_sample_min_size = px
    vae.tile_latent_min_size = px // factor


def _empty_cache(device: str) -> None:
    """Give the cached blocks back, so the next model's weights are not laid out around freed ones."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
