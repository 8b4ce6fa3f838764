"""The draft path's CUDA graphs, safe: a capture that fails runs that module eagerly, and captures happen when
they may (while the queue is idle, one draft shape at a time), never several in front of a member's job.

:class:`GraphedForward` sits in front of one module's :class:`engine.graphs.CudaGraphs`: a shape already
captured replays; a new shape is captured only while capturing is allowed (``DraftRecipes.capturing``), else
it runs eagerly and is remembered as wanted. :func:`idle_shapes` is the order the worker captures the common
draft shapes in when nothing waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch

from ..device import is_oom
from ..graphs import CudaGraphs, graph_key
from ..requests import ASPECTS, size_for_aspect
from ..settings import BATCH_BUCKETS

log = logging.getLogger(__name__)

DRAFT_SIDE = 512  # DraftRequest's default size; other aspects keep its pixel count


class GraphedForward:
    """``fn(*tensors)`` through CUDA graphs per shape, with an eager fallback for this module alone.

    ``may_capture()`` says whether a shape not captured yet may be captured now; when not, the call runs
    ``fn`` eagerly. If a capture raises (anything but out-of-memory, which the worker handles), one log line
    names ``ENGINE_CUDA_GRAPHS`` and this module runs eagerly from then on: no capture is tried again.
    """

    def __init__(self, graphs: CudaGraphs, fn: Callable[..., torch.Tensor], may_capture: Callable[[], bool]):
        self.graphs = graphs
        self.fn = fn
        self.may_capture = may_capture
        self.captured: set[tuple] = set()
        self.failed = False
        self.eager_calls = 0  # calls that ran eagerly (a shape not captured yet, or after a failure)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        key = graph_key(tensors)
        if self.failed or (key not in self.captured and not self.may_capture()):
            self.eager_calls += 1
            return self.fn(*tensors)
        try:
            out = self.graphs(*tensors)
        except Exception as exc:
            if is_oom(exc):
                raise
            self.failed = True
            log.error(
                "capturing a CUDA graph of %s failed (%s: %s); %s runs eagerly from now on. "
                "Set ENGINE_CUDA_GRAPHS=false to skip CUDA graphs.",
                self.graphs.name,
                type(exc).__name__,
                exc,
                self.graphs.name,
            )
            self.eager_calls += 1
            return self.fn(*tensors)
        self.captured.add(key)
        return out


OTHER_ASPECT_BUCKETS = 4  # other aspects: batches up to 4 (one member's drafts); bigger ones are captured when seen


def idle_shapes(max_batch: int, compiled: bool) -> Iterator[tuple[int, int, int]]:
    """(bucket, width, height) of the draft shapes worth capturing while idle, most used first: every bucket
    at 1:1, then each other aspect's buckets up to 4. Compiled graphs (``ENGINE_COMPILE``) compile anew for
    each size (minutes on a GPU): only 1:1 for them."""
    aspects = ["1:1"] if compiled else list(ASPECTS)
    for aspect in aspects:
        width, height = size_for_aspect(aspect, DRAFT_SIDE)
        top = max_batch if aspect == "1:1" else min(max_batch, OTHER_ASPECT_BUCKETS)
        for bucket in BATCH_BUCKETS:
            if bucket > top:
                break
            yield bucket, width, height
