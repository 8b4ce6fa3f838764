"""The prompt-craft fields of a job's params (--chaos, --tile, --model on drafts): checked, stored, read back."""

from __future__ import annotations

import pytest

from core.history import JobParams


def test_craft_fields_round_trip_through_json() -> None:
    params = JobParams(aspect="16:9", chaos=30, tile=True, final_model="sdxl")
    assert params.to_json() == {"aspect": "16:9", "chaos": 30, "tile": True, "final_model": "sdxl"}
    assert JobParams.from_json(params.to_json()) == params


def test_rows_written_before_them_read_as_plain_jobs() -> None:
    params = JobParams.from_json({"aspect": "1:1"})
    assert (params.chaos, params.tile, params.final_model) == (None, None, None)


@pytest.mark.parametrize("bad", [{"chaos": 101}, {"chaos": True}, {"tile": "yes"}, {"final_model": ""}])
def test_bad_values_are_refused_when_made_and_kept_unread_when_stored(bad: dict) -> None:
    with pytest.raises(TypeError, match=f"Job parameter {next(iter(bad))}"):
        JobParams(**bad)
    read = JobParams.from_json(bad)
    assert read.extra == bad and read.to_json() == bad
