"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_cache_dir(request, tmp_path_factory) -> Path:
    """Where the tiny random pipelines live: built once, kept between runs in pytest's cache."""
    from engine.tiny import ensure_tiny_models

    if request.config.cache is not None:
        cache = Path(request.config.cache.mkdir("tiny-models"))
    else:  # -p no:cacheprovider
        cache = tmp_path_factory.mktemp("tiny-models")
    ensure_tiny_models(cache)
    return cache


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA; they are skipped where there is none (CI, laptops)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)
