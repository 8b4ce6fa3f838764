"""Explicit CUDA graphs: one per input shape (the draft batch buckets), replayed with copied-in inputs.

A 1-step Turbo draft is a few milliseconds of GPU work behind hundreds of kernel launches; a graph
launches them all at once. Only the module's forward is captured: noise, generators and the scheduler
step stay outside, so each image keeps the noise of its own seed. Used on CUDA when torch.compile is
off (with compile, ``mode="reduce-overhead"`` records its own graphs); never when offloading, whose
hooks move weights during the forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE  # what torch.cuda.graph_pool_handle() returns

log = logging.getLogger(__name__)


class CudaGraphs:
    """``fn(*tensors) -> tensor`` through a CUDA graph per distinct (shape, dtype) of its inputs.

    The returned tensor is the graph's static output: it is overwritten by the next call, so use it
    (or copy it) before calling again. All graphs of one instance share a memory pool, as they never run
    at the same time.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], name: str, warmup: int = 2):
        self.fn = fn
        self.name = name
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[list[torch.Tensor], torch.Tensor, torch.cuda.CUDAGraph]] = {}
        self._pool: _POOL_HANDLE | None = None  # torch.cuda.graph_pool_handle(), made at the first capture
        self.captures = 0

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
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
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = self.fn(*inputs)
        self.captures += 1
        log.info("captured a CUDA graph of %s for inputs %s", self.name, [tuple(t.shape) for t in tensors])
        return inputs, output, graph
