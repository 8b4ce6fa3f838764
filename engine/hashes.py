"""Content hashes of model components, so identical weights in several checkpoints are loaded once.

The hash of a file in the Hugging Face cache is the name of its blob (the SHA-256 the hub checked at
download); any other file is hashed once and remembered in a small JSON file (by path, size and mtime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ComponentHashes:
    """Hashes of component folders (``unet``, ``vae`` ...), with the hashes of local files kept at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, str] | None = None

    def of(self, folder: Path) -> str | None:
        """Content hash of a component folder's weights (and config), or None if it has none."""
        files = sorted(p for p in folder.glob("*.safetensors") if ".fp16." in p.name) or sorted(
            folder.glob("*.safetensors")
        )
        if not files:
            return None
        h = hashlib.sha256()
        config = folder / "config.json"
        if config.exists():
            cfg = json.loads(config.read_text())
            cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}  # versions and paths differ
            h.update(json.dumps(cfg, sort_keys=True).encode())
        for f in files:
            h.update(self._file_hash(f).encode())
        return h.hexdigest()

    def _file_hash(self, path: Path) -> str:
        real = path.resolve()
        if _SHA256.match(real.name):  # a Hugging Face cache blob: its name is its SHA-256
            return real.name
        stat = real.stat()
        key = f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
        cache = self._load()
        if key not in cache:
            digest = hashlib.sha256()
            with open(real, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(chunk)
            cache[key] = digest.hexdigest()
            self._save()
        return cache[key]

    def _load(self) -> dict[str, str]:
        if self._cache is None:
            try:
                self._cache = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._cache = {}
        return self._cache

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._cache))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only cache only costs time
            log.warning("could not save component hashes: %s", exc)
