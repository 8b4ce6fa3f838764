"""Engines on the tiny preset: real loading code, tiny random weights, the CPU."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.requests import DraftRequest
from engine.settings import EngineSettings
from engine.worker import Engine


def tiny_settings(cache_dir, **changes) -> EngineSettings:
    return EngineSettings.for_preset("tiny", **{"cache_dir": cache_dir, "device": "cpu", "preload": False, **changes})


@pytest.fixture
def make_engine(tiny_cache_dir):
    """Start engines with chosen settings; all are shut down after the test."""
    engines: list[Engine] = []

    def make(**changes) -> Engine:
        engine = Engine(tiny_settings(tiny_cache_dir, **changes)).start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown(timeout=30)


@pytest.fixture(scope="module")
def shared_engine(tiny_cache_dir):
    """One started engine for the tests of a module that do not change its state."""
    engine = Engine(tiny_settings(tiny_cache_dir)).start()
    yield engine
    engine.shutdown(timeout=30)


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"), dtype=np.float32)


def compiled_matches_eager(
    make_engine, backend: str, buckets: tuple[int, ...], tol: float, side: int, **changes
) -> None:
    """Drafts of a compiled engine match an eager one's within ``tol`` (mean pixel) on each bucket, and
    nothing recompiles once every bucket ran once (``fail_on_recompile``); ``side`` px drafts, ``changes``: both
    engines' settings."""
    import torch

    eager = make_engine(compile=False, **changes)
    compiled = make_engine(compile=True, compile_backend=backend, compile_mode="default", max_batch_images=16,
                           **changes)
    assert compiled.registry.compiled and not eager.registry.compiled

    def batch(engine, n):
        requests = [DraftRequest(f"a harbour, take {i}", 40 + i, width=side, height=side, count=1) for i in range(n)]
        return engine.recipes.drafts(requests)

    for n in buckets:  # warm-up: one compile per bucket
        batch(compiled, n)
    torch.compiler.set_stance("fail_on_recompile")
    try:
        for n in buckets:
            assert compiled.recipes.last_batch in buckets
            got, want = batch(compiled, n), batch(eager, n)
            assert compiled.recipes.last_batch == compiled.settings.batch_bucket(n)
            for g, w in zip(got, want, strict=True):
                diff = np.abs(np.asarray(g[0], np.float32) - np.asarray(w[0], np.float32))
                assert diff.mean() <= tol, (n, diff.mean())
        if 4 in buckets:
            batch(compiled, 3)  # padded to the bucket of 4: no new graph either
            assert compiled.recipes.last_batch == 4
    finally:
        torch.compiler.set_stance("default")
