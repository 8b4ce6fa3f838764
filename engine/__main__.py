"""Command line: check a GPU set-up without Discord, and fetch the weights.

python -m engine generate "a red fox in snow" --mode draft --count 4 -o fox.png
python -m engine generate "a red fox in snow" --mode final --model sdxl --seed 7 -o fox.png
python -m engine download
python -m engine serve [--preset tiny] [--address ADDR] [--replicas N] [--gpus-per-replica F]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .requests import ASPECTS, DraftRequest, FinalRequest, RequestError, random_seed, size_for_aspect
from .settings import EngineSettings
from .settings_base import SettingsError


def _settings(args) -> EngineSettings:
    settings = EngineSettings.from_env()
    if args.preset and args.preset != settings.preset:
        # The preset's own defaults; where the models live and the tiny preset's detail stay as set.
        kept = {"cache_dir": settings.cache_dir, "tiny_detail": settings.tiny_detail}
        settings = EngineSettings.for_preset(args.preset, **kept)
    if getattr(args, "device", None):
        settings = settings.replace(device=args.device)
    return settings.replace(preload=False)


def bot_line(url: str, token: str, *, generated: bool) -> str:
    """The line ``serve`` prints for the bot's .env: a token it made up, once; never one the owner set."""
    shown = token if generated else "<set in the environment>"
    return f"ENGINE_BACKEND=ray ENGINE_URL={url} ENGINE_TOKEN={shown}"


def _outputs(path: Path, count: int) -> list[Path]:
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i + 1}{path.suffix or '.png'}") for i in range(count)]


def cmd_generate(args) -> int:
    from .api import JobFailed
    from .worker import Engine

    settings = _settings(args)
    seed = random_seed(args.count if args.mode == "draft" else 1) if args.seed is None else args.seed
    request: DraftRequest | FinalRequest
    try:
        if args.mode == "draft":
            w, h = size_for_aspect(args.aspect, 512)
            request = DraftRequest(
                args.prompt, seed, args.negative or "", w, h, count=args.count, steps=args.steps or settings.draft_steps
            ).validate()
        else:
            w, h = size_for_aspect(args.aspect, 1024)
            request = FinalRequest(
                args.prompt, seed, args.negative or "", w, h, model=args.model or settings.final_model, steps=args.steps
            ).validate()
    except RequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = Engine(settings).start()
    try:
        handle = engine.submit(
            request,
            user="cli",
            on_progress=lambda p: print(f"  step {p.step}/{p.total}", file=sys.stderr, flush=True),
        )
        result = handle.future.result()
    except JobFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.shutdown(timeout=5)
    for path, image in zip(_outputs(Path(args.output), len(result.images)), result.images, strict=True):
        path.write_bytes(image.png)
        print(f"{path}  seed={image.seed}  {image.width}x{image.height}")
    t = result.timings
    print(
        f"model={result.model} steps={result.steps} guidance={result.guidance:g} "
        f"queued={t['queued']:.2f}s run={t['run']:.2f}s encode={t['encode']:.2f}s total={t['total']:.2f}s"
    )
    return 0


def cmd_download(args) -> int:
    from .weights import download, missing_models, needed_models

    settings = _settings(args)
    if args.models:
        names = args.models.split(",")
    else:
        names = needed_models(settings)
    unknown = [n for n in names if n not in ("turbo", "ssd-1b", "sdxl-base", "sdxl-refiner")]
    if unknown:
        print(
            f"error: unknown model(s) {', '.join(unknown)}: use turbo, ssd-1b, sdxl-base, sdxl-refiner", file=sys.stderr
        )
        return 2
    if settings.preset == "tiny":
        from .tiny import ensure_tiny_models

        print(ensure_tiny_models(settings.cache_dir))
        return 0
    if args.if_missing:
        names = missing_models(settings, names)
        if not names:
            print("all weights are on disk")
            return 0
    try:
        paths = download(settings, names)
    except Exception as exc:  # no network, unknown repo, disk full, gated model without a login...
        print(f"error: download failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_serve(args) -> int:
    """Deploy the engine onto a Ray cluster (a running one, or a local one) and serve until stopped."""
    import secrets
    import signal
    import time

    try:
        import ray
        from ray import serve

        from .cluster.serve_app import Scaling, build_app, deploy
    except ImportError as exc:
        print(f"error: Ray Serve is not installed ({exc.name}): pip install -e '.[ray]'", file=sys.stderr)
        return 2
    from .cluster.settings import ClusterSettings

    cluster = ClusterSettings.from_env()
    changes: dict[str, object] = {}
    if args.address:
        changes["address"] = args.address
    if args.host:
        changes["host"] = args.host
    if args.port:
        changes["port"] = args.port
    if args.replicas:
        changes.update(draft_replicas=args.replicas, final_replicas=args.replicas)
        changes.update(draft_max_replicas=0, final_max_replicas=0)
    if args.gpus_per_replica is not None:
        changes.update(draft_gpus=args.gpus_per_replica, final_gpus=args.gpus_per_replica)
    cluster = cluster.replace(**changes)
    settings = _settings(args).replace(preload=True)
    token = cluster.token.get_secret_value()
    generated = not token
    token = token or secrets.token_urlsafe(24)
    if settings.preset == "tiny":
        from .tiny import ensure_tiny_models

        ensure_tiny_models(settings.cache_dir)  # once here, not by several replicas at once

    # Workers import this checkout's engine too (on other machines: the project installed there).
    runtime_env = {"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}}
    if cluster.address:
        ray.init(address=cluster.address, runtime_env=runtime_env)
    else:
        try:
            ray.init(address="auto", runtime_env=runtime_env)
        except ConnectionError:
            print("no running Ray cluster found: starting a local one", file=sys.stderr)
            ray.init(runtime_env=runtime_env)
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0

    def gpus(value: float) -> float:
        return (0.5 if has_gpus else 0.0) if value == -1.0 else value

    drafts = Scaling(
        cluster.draft_replicas,
        max(cluster.draft_replicas, cluster.draft_max_replicas),
        gpus(cluster.draft_gpus),
        cluster.replica_cpus,
    )
    finals = Scaling(
        cluster.final_replicas,
        max(cluster.final_replicas, cluster.final_max_replicas),
        gpus(cluster.final_gpus),
        cluster.replica_cpus,
    )
    print(f"deploying: drafts {drafts}, finals {finals}, preset {settings.preset}", file=sys.stderr)
    app = build_app(settings, token=token, drafts=drafts, finals=finals, batch_wait_s=cluster.batch_wait_ms / 1000)
    url = deploy(app, host=cluster.host, port=cluster.port)
    if cluster.host in ("0.0.0.0", "::"):
        url = url.replace("127.0.0.1", ray.util.get_node_ip_address())
        print("warning: listening on every interface over plain HTTP; keep it on a private network", file=sys.stderr)
    print(bot_line(url, token, generated=generated), flush=True)

    stopping: list[int] = []  # a flag the handlers set: a lock taken in a signal handler can deadlock
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    while not stopping:
        time.sleep(0.5)
    print("shutting down Serve", file=sys.stderr)
    serve.shutdown()
    ray.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make images from a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--mode", choices=("draft", "final"), default="draft")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--count", type=int, default=1, help="drafts: 1-4 images (seed, seed+1, ...)")
    gen.add_argument("--negative", help="negative prompt (finals; Turbo drafts ignore it)")
    gen.add_argument("--aspect", default="1:1", choices=list(ASPECTS))
    gen.add_argument("--model", choices=("ssd-1b", "sdxl"), help="final model")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--preset", choices=("sdxl", "tiny"))
    gen.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    gen.add_argument("-o", "--output", default="out.png")
    gen.set_defaults(fn=cmd_generate)
    dl = sub.add_parser("download", help="fetch the safetensors weights once (fp16 where published)")
    dl.add_argument("--models", help="comma-separated: turbo,ssd-1b,sdxl-base,sdxl-refiner (default: all)")
    dl.add_argument("--preset", choices=("sdxl", "tiny"))
    dl.add_argument("--if-missing", action="store_true", help="only fetch models that are not on disk yet")
    dl.set_defaults(fn=cmd_download)
    sv = sub.add_parser("serve", help="deploy the engine onto a Ray cluster and serve the bot over HTTP")
    sv.add_argument("--preset", choices=("sdxl", "tiny"))
    sv.add_argument("--device", help="auto, cpu, cuda, cuda:N (on every replica)")
    sv.add_argument("--address", help="a running Ray cluster (default: RAY_ADDRESS, then 'auto', then a local one)")
    sv.add_argument("--replicas", type=int, help="replicas of each worker deployment (no autoscaling)")
    sv.add_argument("--gpus-per-replica", type=float, help="GPUs per worker replica; fractions share a GPU")
    sv.add_argument("--host", help="where Serve's HTTP proxy listens (default 127.0.0.1, ENGINE_SERVE_HOST)")
    sv.add_argument("--port", type=int, help="its port (default 8000, ENGINE_SERVE_PORT)")
    sv.set_defaults(fn=cmd_serve)
    args = parser.parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)  # the same settings as the bot; the environment wins
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
