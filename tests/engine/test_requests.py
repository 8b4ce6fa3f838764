"""Bad requests fail with a clear message before they reach the queue or the GPU."""

from __future__ import annotations

import pytest

from engine.requests import (
    ASPECTS,
    MAX_SEED,
    DraftInit,
    DraftRequest,
    FinalRequest,
    RequestError,
    random_seed,
    size_for_aspect,
    snap_side,
)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (DraftRequest("", seed=1), "Prompt is empty"),
        (DraftRequest("   \n", seed=1), "Prompt is empty"),
        (DraftRequest("x" * 1001, seed=1), "1001 characters"),
        (DraftRequest("fox", seed=1, count=0), "1 to 4"),
        (DraftRequest("fox", seed=1, count=5), "1 to 4"),
        (DraftRequest("fox", seed=1, steps=0), "steps must be 1 to 4"),
        (DraftRequest("fox", seed=1, steps=5), "steps must be 1 to 4"),
        (DraftRequest("fox", seed=-1), "out of range"),
        (DraftRequest("fox", seed=2**40), "out of range"),
        (DraftRequest("fox", seed=MAX_SEED), "no room"),
        (DraftRequest("fox", seed=1, width=500), "multiple of 64"),
        (DraftRequest("fox", seed=1, height=128), "between 256"),
        (FinalRequest("fox", seed=1, model="midjourney"), "Unknown final model"),
        (FinalRequest("fox", seed=1, steps=0), "steps must be 1 to 100"),
        (FinalRequest("fox", seed=1, guidance=-1), "Guidance"),
        (FinalRequest("fox", seed=1, width=1000), "multiple of 64"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(request_, message):
    with pytest.raises(RequestError, match=message):
        request_.validate()


def test_engine_refuses_bad_requests_before_queueing(shared_engine):
    for bad in (DraftRequest("", seed=1), DraftRequest("fox", seed=1, count=5), FinalRequest("fox", 1, model="x")):
        with pytest.raises(RequestError):
            shared_engine.submit(bad, user="u")
    assert shared_engine.queue_snapshot() == []


def test_variation_needs_steps_times_strength_of_one():
    parent = DraftRequest("fox", seed=1)
    with pytest.raises(RequestError, match="steps x strength"):
        DraftRequest("fox", seed=2, init=DraftInit(parent, 0), steps=1, strength=0.5).validate()
    DraftRequest("fox", seed=2, init=DraftInit(parent, 0), steps=2, strength=0.5).validate()


def test_draft_init_must_name_an_existing_draft():
    with pytest.raises(RequestError, match="Draft 5 does not exist"):
        DraftInit(DraftRequest("fox", seed=1, count=4), 4)


def test_image_seeds_follow_the_base_seed():
    assert DraftRequest("fox", seed=10, count=3).seeds == (10, 11, 12)


@pytest.mark.parametrize("aspect", list(ASPECTS))
@pytest.mark.parametrize("base", [512, 1024])
def test_aspect_sizes_keep_the_pixel_count_in_multiples_of_64(aspect, base):
    w, h = size_for_aspect(aspect, base)
    assert w % 64 == 0 and h % 64 == 0
    assert 0.85 < (w * h) / base**2 < 1.15
    aw, ah = ASPECTS[aspect]
    assert abs(w / h - aw / ah) / (aw / ah) < 0.12


def test_unknown_aspect_is_refused():
    with pytest.raises(RequestError, match="Unknown aspect"):
        size_for_aspect("5:1", 512)


@pytest.mark.parametrize(("value", "side"), [(100, 256), (300, 320), (1000, 1024), (1023.9, 1024), (5000, 2048)])
def test_a_side_snaps_to_a_multiple_of_64_from_256_to_2048(value, side):
    assert snap_side(value) == side
    DraftRequest("fox", seed=1, width=min(side, 1024), height=256).validate()  # every snapped side is one a job takes


def test_a_random_seed_leaves_room_for_every_image(monkeypatch):
    import random

    monkeypatch.setattr(random, "randint", lambda low, high: high)
    assert random_seed(4) == MAX_SEED - 3
    DraftRequest("fox", seed=random_seed(4), count=4).validate()
    assert random_seed() == MAX_SEED
