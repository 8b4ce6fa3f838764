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


def test_a_jpeg_upload_and_an_old_png_are_both_read_counted_and_pruned(tmp_path):
    """Uploads are stored as JPEG now; files stored as PNG by older versions keep working beside them."""
    from core.attachments import normalize_image

    store = InputStore(tmp_path / "data")
    buffer = io.BytesIO()
    Image.new("RGB", (80, 64), (1, 2, 3)).save(buffer, format="PNG")
    jpeg = normalize_image(buffer.getvalue())
    new = store.put_sync(jpeg)
    old = store.put_sync(png(4))  # as an older version stored every upload
    assert (store.inputs / f"{new}.jpg").is_file() and (store.inputs / f"{old}.png").is_file()
    assert store.get_sync(new) == jpeg and store.get_sync(old) == png(4)
    assert store.has_sync(new) and store.has_sync(old)
    assert store.put_new_sync(jpeg) == (new, 0)  # already there: nothing written
    assert store.usage_sync() == len(jpeg) + len(png(4))
    chosen = store.prunable_sync(max_age_s=None, max_bytes=0, keep=(), now=0.0)
    assert sorted(path.name for path, _ in chosen) == sorted([f"{new}.jpg", f"{old}.png"])
    assert store.remove_sync(new) and not store.has_sync(new) and store.has_sync(old)
