"""Explicit CUDA graphs: one per input shape (the draft batch buckets), replayed with copied-in inputs.

A 1-step Turbo draft is a few milliseconds of GPU work behind hundreds of kernel launches; a graph
launches them all at once. Only the module's forward is captured: noise, generators and the scheduler
step stay outside, so each image keeps the noise of its own seed. Used on CUDA when torch.compile is
off (with compile, ``mode="reduce-overhead"`` records its own graphs); only for Turbo, which stays resident
in offload mode too (its graphs are dropped before it leaves the GPU for a final: ``engine.placement``).

A graph holds the addresses of the weights it read at capture. Whatever replaces a weight's storage
(a module rebuilt, ``.to(dtype)`` and back) would make a replay read freed memory, so a graph
watches its module: :meth:`CudaGraphs.check` (once per batch) compares a fingerprint of the module's
weight addresses with the one taken at capture and drops every graph when they differ; the next call
captures again. LoRA layers (peft's ``lora_*`` weights) are left out of the fingerprint: plain jobs,
the only ones that replay graphs, run with them switched off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE  # what torch.cuda.graph_pool_handle() returns

log = logging.getLogger(__name__)


def graph_key(tensors) -> tuple:
    """What a graph is captured for: every input's shape, dtype and device (batch, size, prompt length)."""
    return tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)


def weights_fingerprint(module: torch.nn.Module | None) -> tuple[int, ...]:
    """The storage addresses of ``module``'s parameters and buffers, in order; LoRA adapters' own weights left out."""
    if module is None:
        return ()
    # A plain walk of the module tree, about 4x faster than named_parameters() (no names are built):
    # 1,680 weights of a full SDXL UNet in about 2.7 ms on a busy 2-core CPU.
    out: list[int] = []
    stack = [module]
    while stack:
        layer = stack.pop()
        out += [t.data_ptr() for t in layer._parameters.values() if t is not None]
        out += [t.data_ptr() for t in layer._buffers.values() if t is not None]
        stack += [child for name, child in layer._modules.items() if child is not None and not name.startswith("lora_")]
    return tuple(out)


class CudaGraphs:
    """``fn(*tensors) -> tensor`` through a CUDA graph per distinct (shape, dtype) of its inputs.

    The returned tensor is the graph's static output: it is overwritten by the next call, so use it
    (or copy it) before calling again. All graphs of one instance share a memory pool, as they never run
    at the same time.
    """

    def __init__(
        self, fn: Callable[..., torch.Tensor], name: str, module: torch.nn.Module | None = None, warmup: int = 2
    ):
        self.fn = fn
        self.name = name
        self.module = module  # whose weights the graphs read (watched by check())
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[list[torch.Tensor], torch.Tensor, torch.cuda.CUDAGraph]] = {}
        self._pool: _POOL_HANDLE | None = None  # torch.cuda.graph_pool_handle(), made at the first capture
        self._fingerprint: tuple[int, ...] | None = None  # the module's weight addresses at the captures
        self.captures = 0
        self.drops = 0  # times the graphs were dropped because the weights moved

    def check(self) -> bool:
        """Drop every graph if the module's weights moved since they were captured; True when dropped.

        Call it once per batch, before the first replay: it walks the module's parameters (a few
        thousand pointers on an SDXL UNet), which costs far less than a batch but more than nothing."""
        if not self._graphs or self.module is None:
            return False
        if weights_fingerprint(self.module) == self._fingerprint:
            return False
        log.warning("the weights of %s moved since its CUDA graphs were captured: capturing again", self.name)
        self.drop()
        self.drops += 1
        return True

    def drop(self) -> None:
        """Forget every graph and their memory pool (captured again on the next call)."""
        self._graphs.clear()
        self._pool = None
        self._fingerprint = None

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        key = graph_key(tensors)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(tensors)
            self._graphs[key] = entry
        inputs, output, graph = entry
        for static, t in zip(inputs, tensors, strict=True):
            static.copy_(t)
        graph.replay()
        return output

    def _capture(self, tensors) -> tuple[list[torch.Tensor], torch.Tensor, torch.cuda.CUDAGraph]:
        inputs = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: lazy inits and autotuning happen here
            for _ in range(self.warmup):
                self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
            self._fingerprint = weights_fingerprint(self.module)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = self.fn(*inputs)
        self.captures += 1
        log.info("captured a CUDA graph of %s for inputs %s", self.name, [tuple(t.shape) for t in tensors])
        return inputs, output, graph
