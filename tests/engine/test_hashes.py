"""Component sharing decides on tensor content: byte-different saves of the same weights are shared."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import engine.hashes as hashes_module
from engine.hashes import ComponentHashes, tensor_digests
from engine.models import ModelRegistry
from engine.tiny import tiny_root

from .conftest import tiny_settings


def resave_text_encoder(folder: Path) -> None:
    """The same text encoder as another tool writes it: tensors in another order, safetensors metadata, and
    a config.json of another transformers version with the keys it adds (dtype, a default spelled out)."""
    weights = folder / "model.safetensors"
    state = load_file(weights)
    save_file(
        {k: state[k].clone() for k in sorted(state, reverse=True)},
        weights,
        metadata={"format": "pt", "saved_by": "another-tool 1.0"},
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(transformers_version="4.33.0.dev0", torch_dtype="float16", _name_or_path="/home/someone/te")
    config.pop("dtype", None)
    config["output_attentions"] = False
    config["attention_dropout"] = config.get("attention_dropout", 0.0)
    (folder / "config.json").write_text(json.dumps(config, indent=4))


def change_one_weight(folder: Path) -> None:
    weights = folder / "model.safetensors"
    state = load_file(weights)
    name = next(k for k in sorted(state) if k.endswith("weight"))
    state[name] = state[name] + 0.01
    save_file(state, weights)


def test_byte_different_saves_of_one_text_encoder_share_and_a_changed_weight_does_not(tiny_cache_dir, tmp_path):
    # SSD-1B's encoders as another tool saved them: text_encoder the same weights, text_encoder_2 one weight off.
    other = tmp_path / "ssd-1b-resaved"
    shutil.copytree(tiny_root(tiny_cache_dir) / "ssd-1b", other)
    original = (tiny_root(tiny_cache_dir) / "ssd-1b" / "text_encoder" / "model.safetensors").read_bytes()
    resave_text_encoder(other / "text_encoder")
    assert (other / "text_encoder" / "model.safetensors").read_bytes() != original
    resave_text_encoder(other / "text_encoder_2")
    change_one_weight(other / "text_encoder_2")

    registry = ModelRegistry(tiny_settings(tiny_cache_dir, ssd1b_model=str(other)), "cpu", torch.float32, "resident")
    registry.get("turbo")
    registry.get("ssd-1b")
    assert registry.shares("turbo", "ssd-1b", "text_encoder")
    assert not registry.shares("turbo", "ssd-1b", "text_encoder_2")
    assert registry.shares("turbo", "ssd-1b", "vae")


def test_sharded_and_single_file_saves_hash_alike_but_not_another_architecture(tiny_cache_dir, tmp_path):
    from transformers import CLIPTextModel

    model = CLIPTextModel.from_pretrained(tiny_root(tiny_cache_dir) / "turbo" / "text_encoder")
    model.save_pretrained(tmp_path / "single")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("model-*-of-*.safetensors"))) > 1
    hashes = ComponentHashes(tmp_path / "hashes.json")
    assert hashes.of(tmp_path / "single") == hashes.of(tmp_path / "sharded") is not None

    # Same tensors, another activation: not the same module.
    shutil.copytree(tmp_path / "single", tmp_path / "gelu")
    config = json.loads((tmp_path / "gelu" / "config.json").read_text())
    config["hidden_act"] = "gelu" if config["hidden_act"] != "gelu" else "quick_gelu"
    (tmp_path / "gelu" / "config.json").write_text(json.dumps(config))
    assert hashes.of(tmp_path / "gelu") != hashes.of(tmp_path / "single")

    # The fp16 variant is what an fp16 folder loads: its hash is the fp16 tensors', whatever plain files sit beside.
    model.half().save_pretrained(tmp_path / "single", variant="fp16")
    model.save_pretrained(tmp_path / "fp16-only", variant="fp16")
    (tmp_path / "fp16-only" / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    assert hashes.of(tmp_path / "single") == hashes.of(tmp_path / "fp16-only") != hashes.of(tmp_path / "sharded")


def test_file_digests_are_cached_by_path_size_and_mtime_across_restarts(tiny_cache_dir, tmp_path, monkeypatch):
    folder = tmp_path / "text_encoder"
    shutil.copytree(tiny_root(tiny_cache_dir) / "turbo" / "text_encoder", folder)
    reads: list[Path] = []
    real = hashes_module.tensor_digests

    def counting(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(hashes_module, "tensor_digests", counting)
    cache = tmp_path / "cache" / "component-hashes.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({"/old/file.safetensors:1:2": "0" * 64}))  # the file-bytes format: started afresh
    first = ComponentHashes(cache).of(folder)
    assert len(reads) == 1
    assert ComponentHashes(cache).of(folder) == first  # a restart: nothing read again
    assert len(reads) == 1

    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))  # touched: read once more
    assert ComponentHashes(cache).of(folder) == first
    assert len(reads) == 2
    change_one_weight(folder)
    assert ComponentHashes(cache).of(folder) != first
    assert len(reads) == 3
    assert len(json.loads(cache.read_text())["files"]) == 1  # one entry per file, replaced when it changes


def test_the_registry_reads_no_weights_for_hashes_after_a_restart(tiny_cache_dir, monkeypatch):
    calls: list[str] = []
    real = hashes_module.tensor_digests
    monkeypatch.setattr(hashes_module, "tensor_digests", lambda path: calls.append(str(path)) or real(path))
    settings = tiny_settings(tiny_cache_dir)
    ModelRegistry(settings, "cpu", torch.float32, "resident").get("turbo")  # hashes whatever is not cached yet
    calls.clear()
    ModelRegistry(settings, "cpu", torch.float32, "resident").get("turbo")
    assert calls == []


def test_a_text_encoder_sized_file_is_hashed_in_chunks(tmp_path):
    # A 1.6 GB tensor (bigG's text encoder in fp16 is about that size), written sparse so the test is cheap:
    # hashing it must stream, holding a few MB, not the tensor.
    size = 1_600_000_000
    tensor = {"dtype": "F16", "shape": [size // 2], "data_offsets": [0, size]}
    header = json.dumps({"__metadata__": {"format": "pt"}, "w": tensor})
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header.encode())
        fh.truncate(8 + len(header) + size)
    tracemalloc.start()
    try:
        digests = tensor_digests(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digests["w"][:2] == ["F16", [size // 2]]
    assert peak < 32 * 2**20, peak


def test_a_truncated_file_is_not_shared_rather_than_crashing(tmp_path):
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    save_file({"w": torch.ones(1000)}, folder / "model.safetensors")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])
    assert ComponentHashes(tmp_path / "h.json").of(folder) is None


@pytest.mark.parametrize("order", [False, True])
def test_tensor_digests_ignore_order_and_metadata(tmp_path, order):
    state = {"a": torch.arange(10.0), "b": torch.ones(3, 4, dtype=torch.float16)}
    save_file(state, tmp_path / "one.safetensors")
    names = sorted(state, reverse=order)
    save_file({k: state[k] for k in names}, tmp_path / "two.safetensors", metadata={"x": "y"})
    assert tensor_digests(tmp_path / "one.safetensors") == tensor_digests(tmp_path / "two.safetensors")
