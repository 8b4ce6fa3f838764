"""Every published architecture through the engine on the CPU: random weights at full size, real loading code.

    python -m benchmarks.fullsize --out fullsize.md            # every row, about 10-15 minutes on 2 cores
    python -m benchmarks.fullsize --rows turbo --out turbo.md  # one row
    python -m benchmarks.fullsize --arch tiny --out tiny.md    # the same code on the tiny preset's shapes

Each row builds the random-weight models it needs (:mod:`benchmarks.architectures`, meta-device init directly
in ``--dtype``, saved with ``save_pretrained``; :mod:`benchmarks.addon_weights` for the Kohya LoRA and the
ESRGAN), then starts the engine (``engine.worker.Engine``) with settings pointing every model at those folders
and ``ENGINE_DTYPE=--dtype``, submits one job and checks its images. The engine loads them itself through
``from_pretrained``, its recipes and its add-ons (LoRA, upscale), as it would an owner's downloads. The jobs
and what makes a row ok: :mod:`benchmarks.fullsize_jobs`.

Rows: ``turbo`` (a 512 px draft, 1 step, TAESDXL decode), ``lora`` (the same with a Kohya SDXL LoRA, rank 32),
``ssd-1b`` (a 512 px final, 2 steps, fp16-fix VAE), ``sdxl`` (base + refiner, 512 px, 3 steps) and ``upscale``
(2x of a 512 px image through an ESRGAN x4plus-size model and spandrel). Full-size rows run one at a time in
a child process each (``--isolate``, the default for ``--arch full``), so the memory of one is gone before
the next starts; model folders are deleted once no later row needs them.

Prints a Markdown table (row, models, ok, build / load / run seconds, peak RSS) to stdout and ``--out``;
exits 0 only when every row is ok. A failing row prints its error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from benchmarks.fullsize_jobs import LORA_NAME, check_engine, check_images, request_for

ROWS: dict[str, dict] = {
    "turbo": {"models": ["turbo", "taesdxl", "vae-fix"], "label": "Turbo draft, {size} px, 1 step (TAESDXL decode)"},
    "lora": {"models": ["turbo", "taesdxl", "vae-fix", "kohya-lora"],
             "label": "Turbo draft + Kohya SDXL LoRA (rank 32, text encoders too)"},
    "ssd-1b": {"models": ["ssd-1b", "taesdxl", "vae-fix"],
               "label": "SSD-1B final, {size} px, {ssd1b_steps} steps (fp16-fix VAE)"},
    "sdxl": {"models": ["sdxl-base", "sdxl-refiner", "taesdxl", "vae-fix"],
             "label": "SDXL base + refiner final, {size} px, {sdxl_steps} steps"},
    "upscale": {"models": ["esrgan"], "label": "Upscale 2x (subtle) of a {size} px image, ESRGAN x4plus via spandrel"},
}


@dataclass
class Row:
    row: str
    ok: bool = False
    build_s: float = 0.0
    load_s: float = 0.0
    run_s: float = 0.0
    build_peak_gb: float = 0.0
    run_peak_gb: float = 0.0
    run_anon_gb: float = 0.0  # the peak of anonymous memory alone (RssAnon: not the mapped weight files)
    note: str = ""
    error: str = ""
    extras: dict = field(default_factory=dict)


# ---- memory ------------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Start a new peak-RSS period (Linux: ``clear_refs`` 5 resets VmHWM); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class AnonPeak:
    """The highest RssAnon (memory of the process's own, without the pages of mapped files that RSS also counts,
    such as safetensors being read), sampled every 0.2 s on a thread while in ``with``."""

    def __init__(self) -> None:
        import threading

        self.peak_gb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def now_gb() -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024 / 1e9
        except OSError:
            pass
        return 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_gb = max(self.peak_gb, self.now_gb())

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_gb = max(self.peak_gb, self.now_gb())


def peak_rss_gb() -> float:
    """The peak resident set size since the last reset (VmHWM), in GB (10^9 bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


# ---- building ----------------------------------------------------------------------------------


def model_path(root: Path, model: str) -> Path:
    return {"kohya-lora": root / "loras" / f"{LORA_NAME}.safetensors",
            "esrgan": root / "esrgan" / "RealESRGAN_x4plus-random.safetensors"}.get(model, root / model)


def build_models(models: list[str], root: Path, arch: str, dtype: str) -> None:
    """Build (once) and save each of ``models`` under ``root``; one at a time, nothing kept in memory."""
    import gc

    from benchmarks import addon_weights, architectures

    for model in models:
        path = model_path(root, model)
        if model in architectures.PIPELINES:
            architectures.build_pipeline(model, path, dtype=dtype, arch=arch)
        elif model == "taesdxl":
            architectures.build_draft_decoder(path, dtype=dtype, arch=arch)
        elif model == "vae-fix":
            architectures.build_vae_fix(path, dtype=dtype, arch=arch)
        elif model == "kohya-lora":
            addon_weights.build_kohya_lora(path, arch=arch)
        elif model == "esrgan":
            addon_weights.build_esrgan(path, arch=arch)
        else:
            raise ValueError(f"unknown model {model!r}")
        gc.collect()


def engine_settings(root: Path, dtype: str, final_model: str = "ssd-1b"):
    """The engine's settings: every model a local folder under ``root``, the CPU, ``ENGINE_DTYPE=dtype``."""
    from engine.settings import EngineSettings

    return EngineSettings.for_preset(
        "sdxl",
        cache_dir=root / "engine-cache",
        device="cpu",
        dtype=dtype,
        memory="resident",
        preload=False,
        final_model=final_model,
        fast_kernels=False,  # fused QKV keeps the unfused projections too: +2.5 GB for base + refiner
        turbo_model=str(model_path(root, "turbo")),
        ssd1b_model=str(model_path(root, "ssd-1b")),
        sdxl_base_model=str(model_path(root, "sdxl-base")),
        sdxl_refiner_model=str(model_path(root, "sdxl-refiner")),
        draft_vae_model=str(model_path(root, "taesdxl")),
        vae_model=str(model_path(root, "vae-fix")),
        preview_every=0,
    )


def addon_environment(root: Path) -> dict[str, str]:
    """The add-on variables of the run: the Kohya LoRA's folder and the ESRGAN file; no reference, no describe."""
    return {"LORA_DIR": str(model_path(root, "kohya-lora").parent), "LORA_HUB": "",
            "UPSCALER_MODEL": str(model_path(root, "esrgan")), "REFERENCE_MODEL": "off", "DESCRIBE_MODEL": "off"}


def run_row(row: str, args: argparse.Namespace) -> Row:
    """Build the row's models, run its job through a fresh engine; never raises."""
    import gc

    out = Row(row)
    root = Path(args.work_dir)
    engine = None
    saved_env = {key: os.environ.get(key) for key in addon_environment(root)}
    try:
        reset_peak_rss()
        started = time.perf_counter()
        build_models(ROWS[row]["models"], root, args.arch, args.dtype)
        out.build_s = time.perf_counter() - started
        out.build_peak_gb = peak_rss_gb()
        gc.collect()
        reset_peak_rss()
        os.environ.update(addon_environment(root))
        from engine.worker import Engine

        final_model = "sdxl" if row == "sdxl" else "ssd-1b"
        engine = Engine(engine_settings(root, args.dtype, final_model)).start()
        started = time.perf_counter()
        request, plain = request_for(row, args.size, args.ssd1b_steps, args.sdxl_steps), None
        with AnonPeak() as anon:
            if row == "lora":  # the same draft without the LoRA first: the LoRA must change the picture
                plain = engine.submit(replace(request, loras=()), user="fullsize").future.result(args.row_timeout)
            result = engine.submit(request, user="fullsize").future.result(timeout=args.row_timeout)
        total = time.perf_counter() - started
        out.run_anon_gb = anon.peak_gb
        out.load_s = sum(loaded.load_s for loaded in engine.registry._loaded.values())
        out.run_s = max(total - out.load_s, 0.0)
        out.run_peak_gb = peak_rss_gb()
        out.extras = {"timings": result.timings}
        out.note = f"{result.model}, {result.steps} steps"
        problem = check_images(row, result, args.size) or check_engine(row, engine, args.dtype, out, result, plain)
        if problem:
            out.error = problem
        else:
            out.ok = True
    except BaseException as exc:  # a failing row reports and the others still run
        out.error = f"{exc.__class__.__name__}: {exc}"
        out.extras["traceback"] = traceback.format_exc()
        out.run_peak_gb = out.run_peak_gb or peak_rss_gb()
    finally:
        if engine is not None:
            engine.shutdown(timeout=30)
        for key, value in saved_env.items():  # a row run in-process (tests) leaves the caller's add-ons as they were
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return out


def run_isolated(row: str, args: argparse.Namespace) -> Row:
    """``run_row`` in a child process (its memory is returned to the system when it ends)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result_file = Path(tmp.name)
    command = [sys.executable, "-m", "benchmarks.fullsize", "--child", row, "--result", str(result_file),
               "--work-dir", str(args.work_dir), "--arch", args.arch, "--dtype", args.dtype, "--size", str(args.size),
               "--ssd1b-steps", str(args.ssd1b_steps), "--sdxl-steps", str(args.sdxl_steps),
               "--row-timeout", str(args.row_timeout)]
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run(command, cwd=root, env=env, timeout=args.row_timeout + 600,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result_file.stat().st_size:
            return Row(**json.loads(result_file.read_text()))
        return Row(row, error=f"the child process exited {proc.returncode}: {proc.stdout[-2000:]}")
    except subprocess.TimeoutExpired:
        return Row(row, error=f"timed out after {args.row_timeout + 600} s")
    finally:
        result_file.unlink(missing_ok=True)


# ---- the table ---------------------------------------------------------------------------------


def table(rows: list[Row], args: argparse.Namespace) -> str:
    import diffusers
    import torch

    lines = [
        f"Full-size architectures through the engine (`python -m benchmarks.fullsize`, --arch {args.arch}, "
        f"{args.dtype}, {args.size} px)",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| row | models | ok | build s | load s | run s | peak RSS build GB | peak RSS run GB | peak anon GB | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        models = ", ".join(ROWS[r.row]["models"])
        note = r.note if r.ok else f"**{r.error}**"
        lines.append(f"| {label(r.row, args)} | {models} | {'ok' if r.ok else 'FAILED'} | {r.build_s:.0f} | "
                     f"{r.load_s:.0f} | {r.run_s:.0f} | {r.build_peak_gb:.1f} | {r.run_peak_gb:.1f} | "
                     f"{r.run_anon_gb:.1f} | "
                     f"{note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def label(row: str, args: argparse.Namespace) -> str:
    return ROWS[row]["label"].format(size=args.size, ssd1b_steps=args.ssd1b_steps, sdxl_steps=args.sdxl_steps)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fullsize", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="also write the table here")
    p.add_argument("--arch", choices=("full", "tiny"), default="full")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma separated, of {', '.join(ROWS)}")
    p.add_argument("--dtype", choices=("bfloat16", "float32", "float16"), default="bfloat16",
                   help="built, saved and run in (ENGINE_DTYPE)")
    p.add_argument("--size", type=int, default=512, help="image side in px")
    p.add_argument("--ssd1b-steps", type=int, default=2)
    p.add_argument("--sdxl-steps", type=int, default=3)
    p.add_argument("--work-dir", type=Path, help="where the models are saved (default: a temporary folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the model folders")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="each row in its own process (default: on for --arch full)")
    p.add_argument("--row-timeout", type=float, default=1800.0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:  # one row, in a child process of the parent's run
        args.result.write_text(json.dumps(asdict(run_row(args.child, args))))
        return 0
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {', '.join(unknown)}: use {', '.join(ROWS)}")
    isolate = args.arch == "full" if args.isolate is None else args.isolate
    temporary = args.work_dir is None
    args.work_dir = Path(tempfile.mkdtemp(prefix="fullsize-")) if temporary else args.work_dir
    results: list[Row] = []
    try:
        for index, row in enumerate(rows):
            print(f"[fullsize] {row}: {label(row, args)} ...", file=sys.stderr, flush=True)
            result = run_isolated(row, args) if isolate else run_row(row, args)
            results.append(result)
            status = "ok" if result.ok else f"FAILED: {result.error}"
            print(f"[fullsize] {row}: {status} (build {result.build_s:.0f} s, load {result.load_s:.0f} s, "
                  f"run {result.run_s:.0f} s, peak {max(result.build_peak_gb, result.run_peak_gb):.1f} GB)",
                  file=sys.stderr, flush=True)
            if not result.ok and result.extras.get("traceback"):
                print(result.extras["traceback"], file=sys.stderr, flush=True)
            if not args.keep:  # free the disk of models no later row needs
                later = {m for r in rows[index + 1:] for m in ROWS[r]["models"]}
                for model in set(ROWS[row]["models"]) - later:
                    path = model_path(args.work_dir, model)
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    text = table(results, args)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
