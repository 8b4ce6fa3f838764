"""Content hashes of model components, so identical weights in several checkpoints are loaded once.

Two repositories rarely hold byte-identical files for the same weights: each tool writes its own
safetensors metadata, tensor order and config keys (``transformers_version``, ``torch_dtype`` ...).
A component's hash therefore covers what the loaded module is made of: the name, dtype, shape and data
of every tensor in the files it loads (:mod:`engine.weightfiles`), whatever file or shard holds them,
plus the config keys that shape the architecture.

Tensor data is hashed in chunks straight from the file (never a whole tensor in memory), once per file:
the digests are kept in a small JSON file by path, size and modification time, so a restart reads none.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

from .weightfiles import local_weights

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # component-hashes.json of another format (the file-bytes hashes) is started afresh
CHUNK = 1 << 22  # 4 MiB reads
# Config keys that say who saved the file, not what it computes.
NOT_ARCHITECTURE = frozenset(
    {
        "_name_or_path",
        "name_or_path",
        "_commit_hash",
        "_diffusers_version",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "architectures",
        "_use_default_values",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "_attn_implementation_internal",
        "use_cache",
        "return_dict",
        "output_attentions",
        "output_hidden_states",
    }
)

TensorDigests = dict[str, list[Any]]  # tensor name -> [dtype, shape, sha256 of its bytes]


def tensor_digests(path: Path) -> TensorDigests:
    """Name -> [dtype, shape, sha256 of the data] of every tensor in a safetensors file, read in chunks."""
    out: TensorDigests = {}
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        start = 8 + size
        tensors = sorted(
            ((name, info) for name, info in header.items() if name != "__metadata__"),
            key=lambda item: item[1]["data_offsets"][0],
        )
        for name, info in tensors:
            begin, end = info["data_offsets"]
            fh.seek(start + begin)
            digest = hashlib.sha256()
            left = end - begin
            while left > 0:
                n = fh.readinto(view[: min(CHUNK, left)])
                if not n:
                    raise ValueError(f"{path} is truncated in tensor {name}")
                digest.update(view[:n])
                left -= n
            out[name] = [info["dtype"], list(info["shape"]), digest.hexdigest()]
    return out


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a component's config.json that change what it computes (defaults filled in, so an
    older save that lists a default and a newer one that omits it agree)."""
    cfg = {k: v for k, v in config.items() if k not in NOT_ARCHITECTURE}
    try:
        if "model_type" in cfg:  # transformers: every key the config class knows, defaults filled in
            from transformers import AutoConfig

            model_type = cfg.pop("model_type")
            known = AutoConfig.for_model(model_type).to_dict().keys() - NOT_ARCHITECTURE
            full = AutoConfig.for_model(model_type, **cfg).to_dict()
            cfg = {k: full[k] for k in known if k in full}
        elif "_class_name" in cfg:  # diffusers: the constructor's parameters, defaults filled in
            import diffusers

            params = inspect.signature(getattr(diffusers, cfg["_class_name"]).__init__).parameters
            filled = {
                k: cfg.get(k, p.default)
                for k, p in params.items()
                if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            }
            cfg = {"_class_name": cfg["_class_name"], **filled}
    except Exception:  # an unknown class: the raw keys, less the savers' own, still decide
        log.debug("config not normalised", exc_info=True)
    return json.loads(json.dumps(cfg, sort_keys=True, default=str))  # tuples and lists alike


class ComponentHashes:
    """Hashes of component folders (``unet``, ``vae`` ...), with the tensor digests of each file kept at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, Any] | None = None

    def of(self, folder: Path) -> str | None:
        """Content hash of a component folder's weights and architecture, or None if it has no safetensors."""
        _, files = local_weights(folder)
        if not files:
            return None
        tensors: TensorDigests = {}
        try:
            for f in files:
                tensors.update(self.file_tensors(f))
        except (OSError, ValueError, KeyError, struct.error) as exc:  # not shared: loading reports the file
            log.warning("could not hash %s: %s", folder, exc)
            return None
        h = hashlib.sha256()
        config = folder / "config.json"
        if config.exists():
            h.update(json.dumps(architecture(json.loads(config.read_text())), sort_keys=True).encode())
        for name in sorted(tensors):
            h.update(json.dumps([name, *tensors[name]]).encode())
        return h.hexdigest()

    def file_tensors(self, path: Path) -> TensorDigests:
        """The tensor digests of one safetensors file: from the cache while its size and mtime hold."""
        real = path.resolve()
        stat = real.stat()
        files = self._load()
        entry = files.get(str(real))
        if not entry or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "tensors": tensor_digests(real)}
            files[str(real)] = entry
            self._save()
        return entry["tensors"]

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = None
            if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
                data = {"format": CACHE_FORMAT, "files": {}}
            self._cache = data
        return self._cache["files"]

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            files = ComponentHashes(self.path)._load()  # another process's entries since ours were read
            files.update(self._load())
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"format": CACHE_FORMAT, "files": files}))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only cache only costs time
            log.warning("could not save component hashes: %s", exc)
