"""The cluster side: one Ray Serve application that runs the same ``engine.recipes`` as the local engine.

Three deployments make it (:func:`build_app`), started by ``python -m engine serve``:

- the ingress (``engine.cluster.ingress``): HTTP through Serve's proxy, the shared secret, health and
  capacity, job streams;
- the draft and final workers (``engine.cluster.workers``): models, one GPU thread and two encoder
  threads per replica; drafts are batched across callers, finals stream progress.

:class:`Scaling` says how many replicas of a worker run and what each may use.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from ray import serve

from ..settings import EngineSettings
from .ingress import APP_NAME, ingress_deployment
from .scaling import Scaling as Scaling  # its own module, so that ingress needs no import of this one
from .workers import draft_deployment, final_deployment


def offer_for(settings: EngineSettings) -> dict[str, Any]:
    """The ``EngineOffer`` fields (JSON) of an engine with these settings, add-ons included."""
    from ..addons import offer_fields
    from ..addons.settings import addon_settings_for
    from ..local import offer_of

    offer = replace(offer_of(settings), backend="ray", **offer_fields(addon_settings_for(settings)))
    return {**asdict(offer), "final_models": list(offer.final_models), "loras": list(offer.loras)}


def build_app(
    settings: EngineSettings,
    *,
    token: str,
    drafts: Scaling = Scaling(),
    finals: Scaling = Scaling(),
    batch_wait_s: float = 0.005,
):
    """The Serve application: ingress -> draft and final workers, all on ``settings``."""
    if not token:
        raise ValueError("the cluster needs a token (ENGINE_TOKEN)")
    settings = settings.replace(preload=True)
    batch = settings.max_batch_images
    # A batch is counted in images; twice that in flight keeps a batch forming while one runs
    # (Serve's default max_ongoing_requests of 5 would cap batches).
    drafts = replace(drafts, target_ongoing=max(1.0, batch / 2))  # about one batch of 2-image drafts
    draft_options = {"max_ongoing_requests": 2 * batch, **drafts.options()}
    draft_worker = draft_deployment.options(**draft_options).bind(settings, batch_wait_s)
    final_worker = final_deployment.options(**finals.options()).bind(settings)
    return ingress_deployment.bind(
        draft_worker,
        final_worker,
        token=token,
        offer=offer_for(settings),
        draft_scaling=drafts,
        final_scaling=finals,
        draft_images_per_replica=2 * batch,
    )


def deploy(app, *, host: str = "127.0.0.1", port: int = 8000, blocking: bool = False) -> str:
    """Start Serve's HTTP proxy on ``host:port`` (loopback unless told otherwise) and run ``app``.

    Returns the URL the bot needs (``ENGINE_URL``).
    """
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"
