"""The benchmark's plan: the models and rows it measures, its command line and what the flags resolve to."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

MODELS = ("turbo", "ssd-1b", "sdxl-base", "sdxl-refiner")
PROMPT = "a red fox in fresh snow, golden hour, detailed fur"
GB = 1e9

# Row keys and the names the table starts each row with (tests check that every one is there).
ROW_NAMES = {
    "draft1": "Draft, 1 image",
    "draft4": "Drafts, 4 images in one request",
    "burst": "Concurrent 1-image drafts",
    "ssd1b": "SSD-1B final",
    "sdxl": "SDXL base + refiner final",
    "memory": "Peak memory, Turbo + SSD-1B resident",
    "start": "Start to first draft",
    "same_draft": "Same seed, same image: draft",
    "same_ssd1b": "Same seed, same image: SSD-1B",
    "same_sdxl": "Same seed, same image: SDXL",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)




@dataclass
class Plan:
    """What to run, resolved from the flags."""

    device: str
    dtype: object  # torch.dtype
    quick: bool
    repeats: int
    warmup: int
    draft_px: int
    final_px: int
    ssd1b_steps: int
    sdxl_steps: int
    split: float
    guidance_ssd1b: float
    guidance_sdxl: float
    concurrency: int
    drafts: bool
    finals: bool
    seed: int
    equiv_tol: float
    timeout: float


def parse_args(argv: list[str] | None, description: str | None = None) -> argparse.Namespace:
    """The flags (``description`` heads ``--help``)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=("tiny", "sdxl"), default="tiny",
                   help="tiny: tiny random pipelines (engine.tiny); sdxl: real weights already downloaded")
    p.add_argument("--arch", choices=("full", "tiny"), default=None,
                   help="build random-weight pipelines of this architecture, save them under --cache-dir "
                        "and load both sides from there (full: for GPU runs)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where tiny/random pipelines are saved (default: the engine's cache dir)")
    p.add_argument("--init-std", type=float, default=0.02, help="std of the random weights with --arch")
    p.add_argument("--prepare-only", action="store_true", help="with --arch: build and save the pipelines, then exit")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), default="auto",
                   help="auto: what the engine uses (float16 on CUDA, float32 on the CPU)")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, default=None,
                   help="small sizes and few steps (default: on for the CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU intra-op threads (default: 1 with --quick on the CPU, where tiny ops gain nothing "
                        "from threads and a busy CI box punishes them; else torch's default)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row, median reported")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before each timed row")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent 1-image draft requests")
    p.add_argument("--skip-finals", action="store_true", help="same as --only draft")
    p.add_argument("--only", choices=("draft", "final"), default=None)
    p.add_argument("--engine-memory", choices=("auto", "resident", "offload"), default="auto",
                   help="EngineSettings.memory for the engine side")
    p.add_argument("--max-batch", type=int, default=None, help="EngineSettings.max_batch_images (default: engine's)")
    p.add_argument("--draft-px", type=int, default=None)
    p.add_argument("--final-px", type=int, default=None)
    p.add_argument("--ssd1b-steps", type=int, default=None)
    p.add_argument("--sdxl-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--equiv-tol", type=float, default=None,
                   help="largest mean |difference| in 0-255 levels that counts as the same image "
                        "(default 0.5 in float32, 2.0 in 16-bit)")
    p.add_argument("--ladder", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the steps table (issue 10): eager, then each step added")
    p.add_argument("--ladder-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="include the torch.compile step in the steps table (default: on for CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="EngineSettings.compile for the engine side (default: the engine's, on for CUDA)")
    p.add_argument("--compile-models", default=None,
                   help="EngineSettings.compile_models, e.g. turbo,ssd-1b (default: all four)")
    p.add_argument("--restart", action=argparse.BooleanOptionalAction, default=None,
                   help="time a new process from start to first draft (default: on for CUDA)")
    p.add_argument("--restart-probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--restart-started", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None,
                   help="also write the table to FILE (markdown) and FILE with suffix .json")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: PyTorch sees no CUDA GPU")
    if args.dtype == "auto":
        dtype = torch.float16 if device.startswith(("cuda", "mps")) else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    quick = args.quick if args.quick is not None else device == "cpu"
    only = "draft" if args.skip_finals else args.only
    sixteen = dtype != torch.float32
    return Plan(
        device=device,
        dtype=dtype,
        quick=quick,
        repeats=args.repeats or (1 if quick else 5),
        warmup=args.warmup if args.warmup is not None else 1,
        draft_px=args.draft_px or (256 if quick else 512),
        final_px=args.final_px or (256 if quick else 1024),
        ssd1b_steps=args.ssd1b_steps or (2 if quick else 30),
        sdxl_steps=args.sdxl_steps or (3 if quick else 40),  # 3 steps at 0.8: 2 base + 1 refiner
        split=0.8,
        guidance_ssd1b=7.0,
        guidance_sdxl=6.0,
        concurrency=args.concurrency,
        drafts=only != "final",
        finals=only != "draft",
        seed=args.seed,
        equiv_tol=args.equiv_tol if args.equiv_tol is not None else (2.0 if sixteen else 0.5),
        timeout=600.0,
    )
