"""Engines on the tiny preset: real loading code, tiny random weights, the CPU."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

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
