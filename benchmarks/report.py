"""The report: the table's rows with ratios and targets, the markdown, the run's metadata, what failed."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.meters import SideResult, fmt_seconds
from benchmarks.plan import GB, ROW_NAMES, Plan


@dataclass
class Row:
    key: str
    work: str
    stock: str
    engine: str
    ratio: str
    target: str
    stock_value: float | None = None
    engine_value: float | None = None
    ratio_value: float | None = None
    met: bool | None = None
    error: str | None = None


def build_rows(plan: Plan, stock: SideResult, eng: SideResult, meta: dict) -> list[Row]:
    import numpy as np

    p = plan
    rows: list[Row] = []
    detail = {
        "draft1": f"(Turbo, 1 step, {p.draft_px} px)",
        "draft4": f"(Turbo, 1 step, {p.draft_px} px)",
        "burst": f"x{p.concurrency}, images/s (stock: {p.concurrency} prompts in one call)",
        "ssd1b": f"({p.final_px} px, {p.ssd1b_steps} steps, guidance {p.guidance_ssd1b:g})",
        "sdxl": f"({p.final_px} px, {p.sdxl_steps} steps, split {p.split:g})",
        "memory": "(drafts + SSD-1B finals)" if p.finals else "(drafts only)",
        "start": "(weights on disk; engine: start() -> first JobResult)",
        "same_draft": "(mean abs pixel diff, 0-255)",
        "same_ssd1b": "(mean abs pixel diff, 0-255)",
        "same_sdxl": "(mean abs pixel diff, 0-255)",
    }
    # (target text, ratio check or None, absolute engine check or None)
    targets: dict[str, tuple[str, Callable | None, Callable | None]] = {
        "draft1": ("<= 0.25", lambda r: r <= 0.25, None),
        "draft4": ("<= 0.30", lambda r: r <= 0.30, None),
        "burst": (">= 3.0", lambda r: r >= 3.0, None),
        "ssd1b": ("<= 0.60", lambda r: r <= 0.60, None),
        "sdxl": ("<= 0.60", lambda r: r <= 0.60, None),
        "memory": ("engine <= 12 GB", None, lambda v: v <= 12 * GB),
        "start": ("engine <= 30 s", None, lambda v: v <= 30),
    }
    skipped = {
        "draft1": not p.drafts, "draft4": not p.drafts, "burst": not p.drafts, "same_draft": not p.drafts,
        "ssd1b": not p.finals, "sdxl": not p.finals, "same_ssd1b": not p.finals, "same_sdxl": not p.finals,
    }
    for key, name in ROW_NAMES.items():
        work = f"{name} {detail[key]}"
        if skipped.get(key):
            rows.append(Row(key, work, "skipped", "skipped", "-", targets.get(key, ("-",))[0]))
            continue
        error = "; ".join(f"{side}: {r.errors[key]}" for side, r in (("stock", stock), ("engine", eng))
                          if key in r.errors)
        if key.startswith("same_"):
            tol = f"<= {p.equiv_tol:g} (fp noise)"
            a, b = stock.images.get(key), eng.images.get(key)
            if a is None or b is None or error:
                rows.append(Row(key, work, "reference", "error" if error else "n/a", "-", tol, error=error or None))
                continue
            if a.shape != b.shape:
                rows.append(Row(key, work, "reference", f"size {b.shape} vs {a.shape}", "-", tol, met=False))
                continue
            diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
            mean = float(diff.mean())
            met = mean <= p.equiv_tol
            rows.append(Row(key, work, "reference", f"{mean:.3f} (max {diff.max():.0f})", "-",
                            f"{tol} {'met' if met else 'MISSED'}", engine_value=mean, met=met))
            continue
        sv, ev = stock.values.get(key), eng.values.get(key)
        text, ratio_ok, abs_ok = targets[key]

        def show(v, key=key):
            if v is None:
                return "error"
            if key == "burst":
                return f"{v:.2f} img/s"
            if key == "memory":
                return f"{v / GB:.2f} GB" + ("" if meta["cuda"] else " RSS")
            return fmt_seconds(v)

        ratio = ev / sv if sv and ev is not None and sv > 0 else None
        met = None
        if ratio_ok is not None and ratio is not None:
            met = ratio_ok(ratio)
        elif abs_ok is not None and ev is not None and (meta["cuda"] or key != "memory"):
            met = abs_ok(ev)
        target = text + ("" if met is None else (" met" if met else " missed"))
        rows.append(Row(key, work, show(sv), show(ev), f"{ratio:.2f}" if ratio is not None else "-", target,
                        sv, ev, ratio, met, error or None))
    return rows


def render(rows: list[Row], meta: dict) -> str:
    lines = [
        f"# Benchmark: stock diffusers vs engine ({meta['label']})",
        "",
        f"- device: {meta['device_name']} ({meta['device']}, {meta['dtype']})",
        f"- torch {meta['torch']}, diffusers {meta['diffusers']}, transformers {meta['transformers']}, "
        f"python {meta['python']}",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- models: {meta['models']}",
        f"- median of {meta['repeats']} timed run(s) after {meta['warmup']} warm-up; engine times are submit -> "
        "JobResult (PNGs encoded), stock times are the `pipe(...)` call",
        "",
        "| work | stock | engine | ratio (engine/stock) | target (issue 5) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.work} | {r.stock} | {r.engine} | {r.ratio} | {r.target} |")
    lines.append("")
    for note in meta["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def system_meta(args: argparse.Namespace, plan: Plan, folders: dict[str, Path], argv: list[str] | None) -> dict:
    import diffusers
    import torch
    import transformers

    cuda = plan.device.startswith("cuda")
    if cuda:
        device_name = torch.cuda.get_device_name(torch.device(plan.device))
    else:
        device_name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    device_name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        device_name += f", {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if args.arch:
        label = f"--arch {args.arch}, random weights, init_std {args.init_std:g}"
    else:
        label = f"--preset {args.preset}"
    if plan.quick:
        label += ", quick (reduced sizes and steps: not the issue-5 recipe)"
    roots = sorted({str(f.parent) for f in folders.values()})
    return {
        "label": label,
        "device": plan.device,
        "device_name": device_name,
        "cuda": cuda,
        "dtype": str(plan.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "models": ", ".join(roots),
        "repeats": plan.repeats,
        "warmup": plan.warmup,
        "notes": [],
    }


def judge(plan: Plan, rows: list[Row], stock: SideResult, eng: SideResult, stock_nonfinite: list[str],
          engine_batches: list[list[int]], meta: dict) -> list[str]:
    """What failed (a row's error, different same-seed images, a module in the wrong dtype, NaN/inf in stock's
    outputs); adds the run's notes to ``meta`` on the way."""
    bad: list[str] = []
    for r in rows:
        if r.error:
            bad.append(f"{r.key}: {r.error}")
        elif r.key.startswith("same_") and r.met is False:
            bad.append(f"{r.key}: images differ beyond {plan.equiv_tol:g}")
    want = meta["dtype"]
    for side_name, side in (("stock", stock), ("engine", eng)):
        dtypes = side.extras.get("module_dtypes") or {}
        wrong = sorted({  # text2img and img2img share modules: name each model once
            f"{pipe.split()[0]} {comp} {dt}" for pipe, comps in dtypes.items() if isinstance(comps, dict)
            for comp, dt in comps.items() if dt != want
        })
        if wrong:
            msg = f"{side_name} modules not in {want} after loading: {', '.join(wrong)}"
            meta["notes"].append(msg)
            bad.append(msg)
    finite = "none" if not stock_nonfinite else ", ".join(stock_nonfinite)
    meta["notes"].append(f"stock same-seed outputs with NaN/inf: {finite}; the engine refuses NaN images itself "
                         "(such a job fails and shows as an error)")
    if stock_nonfinite:
        bad.append(f"NaN/inf in stock outputs: {finite}")
    if engine_batches:
        meta["notes"].append(f"engine batches under {plan.concurrency} concurrent requests (jobs per GPU batch, "
                             f"each repeat): {engine_batches}")
    if not meta["cuda"]:
        meta["notes"].append("CPU memory is resident-set growth per side (stock runs first); the 12 GB target "
                             "is for CUDA and not judged here. Speed targets are for GPUs.")
    return bad


def write_outputs(out: Path, table: str, payload: dict) -> None:
    """The table as markdown at ``out`` and everything measured as JSON beside it (suffix ``.json``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
