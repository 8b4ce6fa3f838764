"""The GPU run's rows, written the moment each is measured: a cut-off run still returns what it measured.

Every row is appended to ``$OUT/rows.md`` (one markdown table per section) and ``$OUT/rows.jsonl`` (the
numbers), and flushed. Memory beside each row: the allocator's peak allocated and reserved bytes since
the section's last reset (``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``) and what the
device has in use (``torch.cuda.mem_get_info``: total minus free, the CUDA context and other processes
included); on the CPU the process's resident set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

GB = 1e9
HEADER = ("| row | value | stock | engine/stock | peak allocated | peak reserved | device in use | note |\n"
          "|---|---|---|---|---|---|---|---|\n")


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "B":
        return f"{value / GB:.2f} GB"
    if unit == "img/s":
        return f"{value:.2f} img/s"
    return f"{value:.3g} {unit}".strip()


def memory(device: str) -> dict[str, float]:
    """Peak allocated and reserved since the last :func:`reset_peaks`, and the device's memory in use now."""
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info()
        return {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved(),
                "in_use": total - free, "total": total}
    try:
        with open("/proc/self/statm") as fh:
            return {"rss": int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")}
    except (OSError, ValueError, IndexError):
        return {}


def reset_peaks(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


class Rows:
    """Appends each row to ``rows.md`` and ``rows.jsonl`` under ``out`` as soon as it is measured."""

    def __init__(self, out: Path, device: str, started: float | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.started = time.time() if started is None else started
        self.section = ""
        self.errors: list[str] = []
        self.stock: dict[str, float] = {}

    def _append(self, name: str, text: str) -> None:
        with open(self.out / name, "a") as fh:
            fh.write(text)
            fh.flush()

    def begin(self, section: str, note: str = "") -> None:
        self.section = section
        self._append("rows.md", f"\n## {section}\n\n" + (f"{note}\n\n" if note else "") + HEADER)
        self._append("rows.jsonl", json.dumps({"section": section, "note": note, "at_s": self.at()}) + "\n")

    def at(self) -> float:
        return round(time.time() - self.started, 1)

    def add(self, name: str, value: float | None, unit: str = "s", *, stock_key: str | None = None,
            note: str = "", error: str | None = None, mem: bool = True) -> None:
        """One row. ``stock_key`` names the stock row to divide by (stock rows are kept under their key)."""
        stock = self.stock.get(stock_key) if stock_key else None
        ratio = value / stock if stock and value is not None else None
        m = memory(self.device) if mem else {}
        if error:
            self.errors.append(f"{self.section}: {name}: {error}")
            note = f"ERROR {error}" + (f"; {note}" if note else "")
        cells = [name, fmt(value, unit), fmt(stock, unit), f"{ratio:.2f}" if ratio is not None else "-",
                 fmt(m.get("allocated"), "B"), fmt(m.get("reserved"), "B"),
                 fmt(m.get("in_use", m.get("rss")), "B") + (" RSS" if "rss" in m else ""), note.replace("|", "/")]
        self._append("rows.md", "| " + " | ".join(cells) + " |\n")
        self._append("rows.jsonl", json.dumps({"section": self.section, "row": name, "value": value, "unit": unit,
                                               "stock": stock, "ratio": ratio, "memory": m, "note": note,
                                               "error": error, "at_s": self.at()}) + "\n")
        print(f"[row {self.at():.0f}s] {self.section} | " + " | ".join(cells), flush=True)

    def keep_stock(self, key: str, value: float | None) -> None:
        if value is not None:
            self.stock[key] = value

    def try_row(self, name: str, fn, unit: str = "s", **kw) -> float | None:
        """``fn()`` gives the row's value (or (value, note)); an exception becomes the row's error."""
        try:
            got = fn()
        except Exception as exc:  # one failed row must not lose the others
            self.add(name, None, unit, error=f"{exc.__class__.__name__}: {exc}"[:400], **kw)
            return None
        value, note = got if isinstance(got, tuple) else (got, kw.pop("note", ""))
        self.add(name, value, unit, note=note, **{k: v for k, v in kw.items() if k != "note"})
        return value
