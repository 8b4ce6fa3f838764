"""The image store: atomic writes that hold when many people store the same image at once."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from core.inputs import InputStore


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, seed // 256 % 256, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_two_hundred_concurrent_pairs_of_the_same_image_all_store(tmp_path):
    store = InputStore(tmp_path / "data")
    images = [png(i) for i in range(200)]
    keys = await asyncio.gather(*(store.put(image) for image in images for _ in range(2)))
    assert len(set(keys)) == 200
    for key, image in zip(keys[::2], images, strict=True):
        assert await store.get(key) == image
    assert sorted(p.name for p in store.inputs.iterdir() if p.name.startswith(".")) == []  # no temp files left


async def test_the_same_final_stored_twice_at_once(tmp_path):
    store = InputStore(tmp_path / "data")
    await asyncio.gather(*(store.put_result(7, png(i % 2)) for i in range(50)))
    assert await store.result(7) in (png(0), png(1))
    assert [p.name for p in store.results.iterdir()] == ["7.png"]
