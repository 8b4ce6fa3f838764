"""The cluster's wire format: requests, results and progress as JSON. Torch-free, Ray-free.

Both sides of the HTTP link (``engine.cluster.transport`` in the bot, ``engine.cluster.workers`` on
the cluster) use these functions, and nothing else crosses the network: no pickle, so a bot and a
cluster on different Python or Ray versions still understand each other. Bytes travel as base64;
every object names its fields explicitly, and an unknown field or kind is refused.

Both ways, messages travel as frames (``MEDIA_TYPE``): a 4-byte big-endian length, then that many
bytes of one JSON object, at most ``MAX_FRAME_BYTES`` (a real final is megabytes of base64, far past
any line limit). A job is one ``{"type": "job", "job_id": ..., "request": {...}}`` frame; its answer
is ``{"type": "progress", ...}`` any number of times, then exactly one of
``{"type": "result", "result": {...}}`` or ``{"type": "error", "kind": ..., "message": ...}``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from ..requests import (
    DescribeRequest,
    DraftInit,
    DraftRequest,
    FinalRequest,
    ImageInit,
    Init,
    Request,
    UpscaleRequest,
)
from ..results import GeneratedImage, JobResult, Progress

# Error kinds in an ``error`` line, and what the client does with them.
ERROR_KINDS = (
    "request",  # the request was refused (bad input): JobFailed with the message, no retry
    "failed",  # the recipe failed (model missing, invalid image, out of memory): JobFailed, no retry
    "cancelled",  # the job was stopped because it was cancelled
    "worker_lost",  # the replica running it died: the client retries once with the same job id
)

# Prompt craft, on drafts and finals alike ("loras" and "reference" are encoded apart).
_CRAFT_FIELDS = ("tile", "reference_weight", "reference_mode")
_DRAFT_FIELDS = (
    "prompt", "seed", "negative_prompt", "width", "height", "count", "steps", "strength", "chaos", *_CRAFT_FIELDS
)
_UPSCALE_FIELDS = ("mode", "prompt", "negative_prompt", "seed", "model")
_FINAL_FIELDS = (
    "prompt",
    "seed",
    "negative_prompt",
    "width",
    "height",
    "model",
    "steps",
    "guidance",
    "strength",
    "refiner_split",
    *_CRAFT_FIELDS,
)


MEDIA_TYPE = "application/x-imagine-frames"
HEADER_BYTES = 4
# One frame, either way. The largest real message is an upscale's result (a 4096 px PNG, up to about
# 35 MB, 47 MB as base64) or a request carrying several 10 MiB uploads; anything beyond this is not ours.
MAX_FRAME_BYTES = 128 * 2**20
ANSWER_TYPES = ("progress", "result", "error")


class WireError(ValueError):
    """A message that does not follow the wire format (a version mismatch or a bug, never user input)."""


class TruncatedFrame(WireError):
    """The stream ended inside a frame: the connection broke."""


class OversizeFrame(WireError):
    """A frame announced more than ``MAX_FRAME_BYTES`` (or garbage whose first bytes read as a length)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise WireError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError as exc:
        raise WireError(f"{what} is not valid base64") from exc


def _expect(obj: Any, keys: set[str], what: str) -> dict:
    if not isinstance(obj, dict):
        raise WireError(f"{what} must be an object")
    unknown = set(obj) - keys
    if unknown:
        raise WireError(f"{what} has unknown field(s): {', '.join(sorted(unknown))}")
    return obj


# --------------------------------------------------------------------------- requests


def _encode_init(init: Init | None) -> dict | None:
    if init is None:
        return None
    if isinstance(init, ImageInit):
        return {"type": "image", "data": _b64(init.data)}
    if isinstance(init, DraftInit):
        return {"type": "draft", "draft": encode_request(init.draft), "index": init.index}
    raise WireError(f"unknown init type {type(init).__name__}")


def _decode_init(obj: Any) -> Init | None:
    if obj is None:
        return None
    _expect(obj, {"type", "data", "draft", "index"}, "init")
    kind = obj.get("type")
    if kind == "image":
        return ImageInit(_unb64(obj.get("data"), "init.data"))
    if kind == "draft":
        draft = decode_request(obj.get("draft"))
        if not isinstance(draft, DraftRequest):
            raise WireError("init.draft must be a draft request")
        index = obj.get("index")
        if not isinstance(index, int):
            raise WireError("init.index must be an integer")
        return DraftInit(draft, index)
    raise WireError(f"unknown init type {kind!r}")


def _encode_craft(request: DraftRequest | FinalRequest) -> dict:
    return {
        "loras": [[name, weight] for name, weight in request.loras],
        "reference": None if request.reference is None else _b64(request.reference),
    }


def _decode_craft(obj: dict) -> dict:
    loras = obj.get("loras") or []
    if not isinstance(loras, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], int | float)
        for pair in loras
    ):
        raise WireError("loras must be a list of [name, weight] pairs")
    reference = obj.get("reference")
    return {
        "loras": tuple((name, float(weight)) for name, weight in loras),
        "reference": None if reference is None else _unb64(reference, "reference"),
    }


def encode_request(request: Request) -> dict:
    """A JSON-ready dict of any request (nested DraftInit included)."""
    if isinstance(request, UpscaleRequest):
        return {"kind": "upscale", "image": _b64(request.image), **{n: getattr(request, n) for n in _UPSCALE_FIELDS}}
    if isinstance(request, DescribeRequest):
        return {"kind": "describe", "image": _b64(request.image), "count": request.count}
    if isinstance(request, DraftRequest):
        out: dict[str, Any] = {"kind": "draft", **{name: getattr(request, name) for name in _DRAFT_FIELDS}}
    elif isinstance(request, FinalRequest):
        out = {"kind": "final", **{name: getattr(request, name) for name in _FINAL_FIELDS}}
        out["mask"] = None if request.mask is None else _b64(request.mask)
    else:
        raise WireError(f"unknown request type {type(request).__name__}")
    out.update(_encode_craft(request))
    out["init"] = _encode_init(request.init)
    return out


def decode_request(obj: Any) -> Request:
    """The request ``encode_request`` made (not validated: call ``.validate()`` where it matters)."""
    try:
        return _decode_request(obj)
    except TypeError as exc:  # a missing field
        raise WireError(f"malformed request: {exc}") from exc


def _decode_request(obj: Any) -> Request:
    if not isinstance(obj, dict):
        raise WireError("request must be an object")
    kind = obj.get("kind")
    if kind == "draft":
        _expect(obj, {"kind", "init", "loras", "reference", *_DRAFT_FIELDS}, "draft request")
        return DraftRequest(
            **{name: obj[name] for name in _DRAFT_FIELDS if name in obj},
            **_decode_craft(obj),
            init=_decode_init(obj.get("init")),
        )
    if kind == "final":
        _expect(obj, {"kind", "init", "mask", "loras", "reference", *_FINAL_FIELDS}, "final request")
        mask = obj.get("mask")
        return FinalRequest(
            **{name: obj[name] for name in _FINAL_FIELDS if name in obj},
            **_decode_craft(obj),
            init=_decode_init(obj.get("init")),
            mask=None if mask is None else _unb64(mask, "mask"),
        )
    if kind == "upscale":
        _expect(obj, {"kind", "image", *_UPSCALE_FIELDS}, "upscale request")
        return UpscaleRequest(
            image=_unb64(obj.get("image"), "image"), **{name: obj[name] for name in _UPSCALE_FIELDS if name in obj}
        )
    if kind == "describe":
        _expect(obj, {"kind", "image", "count"}, "describe request")
        count = {"count": obj["count"]} if "count" in obj else {}
        return DescribeRequest(image=_unb64(obj.get("image"), "image"), **count)
    raise WireError(f"unknown request kind {kind!r}")


# --------------------------------------------------------------------------- results and progress


def encode_result(result: JobResult) -> dict:
    return {
        "images": [
            {"png": _b64(image.png), "seed": image.seed, "width": image.width, "height": image.height}
            for image in result.images
        ],
        "model": result.model,
        "request": encode_request(result.request),
        "steps": result.steps,
        "guidance": result.guidance,
        "timings": dict(result.timings),
        "batch_size": result.batch_size,
        "suggestions": list(result.suggestions),
    }


def decode_result(obj: Any) -> JobResult:
    _expect(obj, {"images", "model", "request", "steps", "guidance", "timings", "batch_size", "suggestions"}, "result")
    suggestions = obj.get("suggestions") or []
    if not isinstance(suggestions, list) or not all(isinstance(text, str) for text in suggestions):
        raise WireError("suggestions must be a list of strings")
    images = []
    for item in obj.get("images") or []:
        _expect(item, {"png", "seed", "width", "height"}, "image")
        images.append(GeneratedImage(_unb64(item["png"], "image.png"), item["seed"], item["width"], item["height"]))
    return JobResult(
        images=tuple(images),
        model=obj["model"],
        request=decode_request(obj["request"]),
        steps=obj["steps"],
        guidance=float(obj["guidance"]),
        timings={str(k): float(v) for k, v in obj["timings"].items()},
        batch_size=obj.get("batch_size", 1),
        suggestions=tuple(suggestions),
    )


def progress_frame(step: int, total: int, preview: bytes | None) -> bytes:
    return frame(
        {"type": "progress", "step": step, "total": total, "preview": None if preview is None else _b64(preview)}
    )


def decode_progress(job_id: str, obj: dict) -> Progress:
    _expect(obj, {"type", "step", "total", "preview"}, "progress")
    preview = obj.get("preview")
    return Progress(
        job_id, int(obj["step"]), int(obj["total"]), None if preview is None else _unb64(preview, "preview")
    )


def result_frame(result: JobResult) -> bytes:
    return frame({"type": "result", "result": encode_result(result)})


def error_frame(kind: str, message: str) -> bytes:
    if kind not in ERROR_KINDS:
        raise WireError(f"unknown error kind {kind!r}")
    return frame({"type": "error", "kind": kind, "message": message})


def job_frame(job_id: str, request: Request) -> bytes:
    """The body of ``POST /jobs``."""
    return frame({"type": "job", "job_id": job_id, "request": encode_request(request)})


# --------------------------------------------------------------------------- frames


def frame(obj: dict) -> bytes:
    """One frame: the length of the JSON, then the JSON."""
    payload = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_FRAME_BYTES:
        raise OversizeFrame(f"a {obj.get('type')} frame of {len(payload)} bytes is over {MAX_FRAME_BYTES}")
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


class FrameReader:
    """Cuts frames out of a byte stream as it arrives, whatever the chunks; refuses what is not a frame
    of the expected ``types`` as soon as it can (an oversize length before its bytes are read)."""

    def __init__(self, types: tuple[str, ...], max_bytes: int = MAX_FRAME_BYTES):
        self._types = types
        self._max = max_bytes
        self._buffer = bytearray()
        self._need = 0  # the current frame's length, once its header is in

    def feed(self, chunk: bytes) -> list[dict]:
        self._buffer += chunk
        out: list[dict] = []
        while True:
            if not self._need:
                if len(self._buffer) < HEADER_BYTES:
                    return out
                self._need = int.from_bytes(self._buffer[:HEADER_BYTES], "big")
                if self._need > self._max:
                    raise OversizeFrame(f"a frame announced {self._need} bytes (at most {self._max})")
                if not self._need:
                    raise WireError("an empty frame")
            end = HEADER_BYTES + self._need
            if len(self._buffer) < end:
                return out
            out.append(self._parse(bytes(self._buffer[HEADER_BYTES:end])))
            del self._buffer[:end]
            self._need = 0

    def end(self) -> None:
        """The stream ended: refuse a frame cut short."""
        if self._buffer:
            raise TruncatedFrame(f"the stream ended {len(self._buffer)} bytes into a frame")

    def _parse(self, payload: bytes) -> dict:
        try:
            obj = json.loads(payload)
        except ValueError as exc:
            raise WireError(f"a frame is not JSON: {payload[:80]!r}") from exc
        if not isinstance(obj, dict) or obj.get("type") not in self._types:
            raise WireError(f"unexpected frame: {payload[:80]!r}")
        return obj


async def read_frames(chunks: AsyncIterable[bytes], types: tuple[str, ...] = ANSWER_TYPES) -> AsyncIterator[dict]:
    """The frames of a stream of byte chunks (aiohttp's ``iter_any()``, Starlette's ``stream()``)."""
    reader = FrameReader(types)
    async for chunk in chunks:
        for obj in reader.feed(chunk):
            yield obj
    reader.end()


async def read_job(chunks: AsyncIterable[bytes], headers: Mapping[str, str]) -> tuple[str, dict]:
    """The job id and the encoded request of a ``POST /jobs`` body: exactly one ``job`` frame.

    Raises OversizeFrame for a body over the limit (checked from ``Content-Length`` before reading),
    WireError for anything else that is not one job frame."""
    if (headers.get("content-type") or "").split(";")[0].strip() != MEDIA_TYPE:
        raise WireError(f"the body must be {MEDIA_TYPE}")
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > HEADER_BYTES + MAX_FRAME_BYTES:
        raise OversizeFrame(f"a body of {length} bytes is over {HEADER_BYTES + MAX_FRAME_BYTES}")
    job: dict | None = None
    async for obj in read_frames(chunks, ("job",)):
        if job is not None:
            raise WireError("the body must be one job frame, not more")
        job = obj
    if job is None:
        raise WireError("the body holds no job frame")
    job_id, payload = job.get("job_id"), job.get("request")
    if not isinstance(job_id, str) or not isinstance(payload, dict):
        raise WireError("a job frame needs a job_id and a request")
    return job_id, payload
