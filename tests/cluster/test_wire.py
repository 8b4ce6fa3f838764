"""The cluster's JSON wire format: every request and result survives the trip unchanged."""

from __future__ import annotations

import json

import pytest

from engine.cluster import wire
from engine.requests import DraftInit, DraftRequest, FinalRequest, ImageInit
from engine.results import GeneratedImage, JobResult

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

DRAFT = DraftRequest("a red fox", seed=7, negative_prompt="blurry", width=768, height=512, count=3, steps=2)
REQUESTS = [
    DRAFT,
    DraftRequest("variation", seed=9, init=DraftInit(DRAFT, 2), steps=2, strength=0.5),
    DraftRequest("from a photo", seed=1, init=ImageInit(PNG), steps=4, strength=0.25),
    FinalRequest("upscale", seed=DRAFT.seed + 1, init=DraftInit(DRAFT, 1), model="sdxl", strength=0.45),
    FinalRequest("plain", seed=0, steps=None, guidance=None),
    FinalRequest("edit", seed=3, width=1024, height=768, init=ImageInit(PNG), mask=b"mask-bytes\x00\xff", steps=30),
    FinalRequest(
        "nested",
        seed=5,
        init=DraftInit(DraftRequest("inner", seed=2, init=DraftInit(DRAFT, 0), steps=2, strength=0.5), 0),
    ),
]


def through_json(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r.kind}-{r.prompt}")
def test_request_round_trip(request_):
    assert wire.decode_request(through_json(wire.encode_request(request_))) == request_


def test_result_round_trip_keeps_bytes_seeds_and_timings():
    result = JobResult(
        images=(GeneratedImage(PNG, 7, 768, 512), GeneratedImage(PNG[::-1], 8, 768, 512)),
        model="turbo",
        request=DRAFT,
        steps=2,
        guidance=0.0,
        timings={"queued": 0.5, "run": 1.25, "encode": 0.01, "total": 1.8},
        batch_size=3,
    )
    (frame,) = wire.FrameReader(wire.ANSWER_TYPES).feed(wire.result_frame(result))
    assert wire.decode_result(frame["result"]) == result


def test_progress_frame_round_trip():
    reader = wire.FrameReader(wire.ANSWER_TYPES)
    (frame,) = reader.feed(wire.progress_frame(5, 28, PNG))
    progress = wire.decode_progress("job-1", frame)
    assert (progress.job_id, progress.step, progress.total, progress.preview) == ("job-1", 5, 28, PNG)
    assert wire.decode_progress("j", reader.feed(wire.progress_frame(1, 2, None))[0]).preview is None


def test_frames_are_cut_out_of_any_chunks():
    stream = b"".join(
        [wire.progress_frame(1, 3, PNG), wire.progress_frame(2, 3, None), wire.error_frame("failed", "no")]
    )
    for size in (1, 3, 7, len(stream)):
        reader = wire.FrameReader(wire.ANSWER_TYPES)
        frames = [f for i in range(0, len(stream), size) for f in reader.feed(stream[i : i + size])]
        reader.end()
        assert [f["type"] for f in frames] == ["progress", "progress", "error"] and frames[-1]["message"] == "no"


def test_a_frame_cut_short_an_oversize_one_and_garbage_are_refused():
    cut = wire.FrameReader(wire.ANSWER_TYPES)
    assert cut.feed(wire.result_frame(JobResult((), "turbo", DRAFT, 1, 0.0, {}))[:-1]) == []
    with pytest.raises(wire.TruncatedFrame):
        cut.end()
    with pytest.raises(wire.OversizeFrame):  # refused from the header, before its bytes arrive
        wire.FrameReader(wire.ANSWER_TYPES).feed((wire.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(wire.OversizeFrame):  # an NDJSON line's first bytes read as a huge length
        wire.FrameReader(wire.ANSWER_TYPES).feed(b'{"type":"result"}\n')
    with pytest.raises(wire.WireError):
        wire.FrameReader(wire.ANSWER_TYPES).feed(b"\x00\x00\x00\x08not json")
    with pytest.raises(wire.WireError):  # a job frame is no answer
        wire.FrameReader(wire.ANSWER_TYPES).feed(wire.job_frame("j", DRAFT))


def test_the_wire_is_plain_json_without_pickle():
    encoded = json.dumps(wire.encode_request(REQUESTS[-2]))
    assert "mask" in encoded and "pickle" not in encoded
    assert json.loads(encoded)["init"]["type"] == "image"


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "sketch", "prompt": "x", "seed": 1},
        {"kind": "draft", "prompt": "x", "seed": 1, "init": None, "evil": "__reduce__"},
        {"kind": "final", "prompt": "x", "seed": 1, "init": {"type": "image", "data": "not base64!"}},
        {"kind": "final", "prompt": "x", "seed": 1, "init": {"type": "draft", "draft": {"kind": "final"}}},
        "a string",
    ],
)
def test_malformed_requests_are_refused(bad):
    with pytest.raises(wire.WireError):
        wire.decode_request(bad)


def test_unknown_frames_and_error_kinds_are_refused():
    with pytest.raises(wire.WireError):
        wire.FrameReader(wire.ANSWER_TYPES).feed(wire.frame({"type": "exec"}))
    with pytest.raises(wire.WireError):
        wire.error_frame("segfault", "no")


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_a_job_body_is_exactly_one_job_frame_of_the_media_type():
    body = wire.job_frame("job-1", DRAFT)
    headers = {"content-type": wire.MEDIA_TYPE, "content-length": str(len(body))}
    job_id, payload = await wire.read_job(_chunks(body[:5], body[5:]), headers)
    assert job_id == "job-1" and wire.decode_request(payload) == DRAFT
    with pytest.raises(wire.WireError):  # the old JSON body
        await wire.read_job(_chunks(json.dumps({"job_id": "j"}).encode()), {"content-type": "application/json"})
    with pytest.raises(wire.WireError):
        await wire.read_job(_chunks(body, body), {"content-type": wire.MEDIA_TYPE})
    with pytest.raises(wire.TruncatedFrame):
        await wire.read_job(_chunks(body[:-3]), {"content-type": wire.MEDIA_TYPE})
    with pytest.raises(wire.OversizeFrame):  # from the header, before any byte is read
        await wire.read_job(_chunks(), {"content-type": wire.MEDIA_TYPE, "content-length": str(2**31)})
