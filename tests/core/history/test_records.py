"""Job records (core/history/records.py): checked fields, the mode, the typed params and old rows."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from core.history import HistoryError, HistoryStore, JobMode, JobParams, NewJob
from tests.core.history.sqlite import raw, stored_params
from tests.core.records import new_job

KEY = "ab" * 32  # what core.inputs names a stored image


def test_new_job_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="kind"):
        new_job(kind="sketch")
    with pytest.raises(ValueError, match="count"):
        new_job(count=0)
    with pytest.raises(ValueError, match="parent_index"):
        new_job(parent_index=1)
    with pytest.raises(TypeError):
        NewJob("draft", "imagine")  # type: ignore[misc]  # keyword arguments only
    with pytest.raises(TypeError, match="JobParams"):
        new_job(params={"aspect": "1:1"})


def test_new_job_takes_the_mode_as_text_and_refuses_an_unknown_one() -> None:
    assert new_job(mode="upscale").mode is JobMode.FINAL_OF_DRAFT
    with pytest.raises(ValueError, match="imagine, img2img, final") as refused:
        new_job(mode="sketch")
    assert "'sketch'" in str(refused.value)


def test_job_mode_is_its_text() -> None:
    mode = JobMode.IMAGINE
    assert mode == "imagine" and "imagine" == mode and mode != "final"
    assert (str(mode), f"{mode}") == ("imagine", "imagine")  # what log lines and messages show
    assert json.dumps({"mode": mode}) == '{"mode": "imagine"}'
    assert JobMode("reroll") is JobMode.REROLL
    assert {m.value for m in JobMode} == {
        "imagine", "img2img", "final", "inpaint", "outpaint", "variation", "vary", "upscale", "reroll", "remix",
        "upscale2x",
    }  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"aspect": 16},
        {"init_image": ""},
        {"mask_image": 3},
        {"region": (1, 2, 3)},
        {"region": (1, 2, 3, "4")},
        {"region": "0,0,50,50"},
        {"outpaint": ""},
        {"vary": ["subtle"]},
        {"refiner_split": math.nan},
        {"refiner_split": True},
        {"prefs": "aspect"},
        {"prefs": ("aspect", 2)},
        {"reroll_of": 0},
        {"repost_of": True},
        {"extra": {1: "not a name"}},
    ],
)
def test_params_refuse_values_of_the_wrong_type(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        JobParams(**bad)


def test_params_json_has_only_what_is_set_and_reads_back_the_same() -> None:
    assert JobParams().to_json() == {}
    every = JobParams(
        aspect="16:9",
        init_image=KEY,
        mask_image="cd" * 32,
        region=(25, 0, 50.5, 50),
        outpaint="zoom2",
        vary="subtle",
        refiner_split=0.7,
        prefs=["aspect", "style_suffix"],  # type: ignore[arg-type]  # a list from JSON becomes a tuple
        reroll_of=3,
        repost_of=4,
        extra={"note": [1, {"a": None}]},
    )
    assert every.prefs == ("aspect", "style_suffix") and every.region == (25, 0, 50.5, 50)
    assert every.to_json() == {
        "aspect": "16:9", "init_image": KEY, "mask_image": "cd" * 32, "region": [25, 0, 50.5, 50],
        "outpaint": "zoom2", "vary": "subtle", "refiner_split": 0.7, "prefs": ["aspect", "style_suffix"],
        "reroll_of": 3, "repost_of": 4, "note": [1, {"a": None}],
    }  # fmt: skip
    assert JobParams.from_json(json.loads(json.dumps(every.to_json()))) == every


def test_params_keep_their_own_copy_of_extra_and_refuse_a_key_given_twice() -> None:
    extra = {"note": 1}
    params = JobParams(extra=extra)
    extra["note"] = 2
    assert params.extra == {"note": 1}
    with pytest.raises(ValueError, match="aspect"):
        JobParams(aspect="1:1", extra={"aspect": "2:1"})


async def test_params_are_stored_as_the_json_older_bots_wrote(store: HistoryStore, db_path: Path) -> None:
    applied = await store.create_job(new_job(params=JobParams(aspect="16:9", prefs=("aspect", "style_suffix"))))
    assert stored_params(db_path, applied.id) == '{"aspect":"16:9","prefs":["aspect","style_suffix"]}'
    edit = await store.create_job(new_job(params=JobParams(region=(50.0, 0.0, 50.0, 100.0), init_image=KEY)))
    assert stored_params(db_path, edit.id) == '{"init_image":"' + KEY + '","region":[50.0,0.0,50.0,100.0]}'
    plain = await store.create_job(new_job())
    assert stored_params(db_path, plain.id) == "{}"


async def stored_with(store: HistoryStore, db_path: Path, params_json: str) -> int:
    """A job whose params column holds ``params_json``, as a bot of another version left it."""
    job = await store.create_job(new_job())
    with raw(db_path) as conn:
        conn.execute("UPDATE jobs SET params = ? WHERE id = ?", (params_json, job.id))
    return job.id


async def test_old_rows_with_keys_this_code_does_not_know_read_and_keep_them(
    store: HistoryStore, db_path: Path
) -> None:
    old = '{"aspect":"1:1","future":{"a":[1,2]},"prefs":["aspect"],"reroll_of":7}'
    job_id = await stored_with(store, db_path, old)
    record = await store.get_job(job_id)
    assert record is not None
    assert (record.params.aspect, record.params.prefs, record.params.reroll_of) == ("1:1", ("aspect",), 7)
    assert record.params.extra == {"future": {"a": [1, 2]}}
    copy = await store.create_job(new_job(params=record.params))  # what 🔁, re-post and V do
    assert stored_params(db_path, copy.id) == old


async def test_known_keys_with_values_of_the_wrong_type_do_not_break_a_read(
    store: HistoryStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = '{"aspect":16,"init_image":"","outpaint":null,"region":[1,2],"vary":"strong"}'
    job_id = await stored_with(store, db_path, old)
    with caplog.at_level(logging.WARNING, logger="core.history.records"):
        record = await store.get_job(job_id)
    assert record is not None
    assert (record.params.aspect, record.params.init_image, record.params.region) == (None, None, None)
    assert record.params.outpaint is None and record.params.vary == "strong"
    assert record.params.extra == {"aspect": 16, "init_image": "", "outpaint": None, "region": [1, 2]}
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(f"job {job_id}: parameter {name}" in warned for name in ("aspect", "init_image", "region"))
    copy = await store.create_job(new_job(params=record.params))
    assert stored_params(db_path, copy.id) == old


async def test_params_that_are_not_an_object_read_as_empty(
    store: HistoryStore, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = await stored_with(store, db_path, "[1, 2]")
    with caplog.at_level(logging.WARNING, logger="core.history.records"):
        record = await store.get_job(job_id)
    assert record is not None and record.params == JobParams()
    assert f"job {job_id}: its params are not a JSON object" in caplog.text


async def test_a_row_with_a_mode_this_code_does_not_know_is_refused_by_name(
    store: HistoryStore, db_path: Path
) -> None:
    job = await store.create_job(new_job())
    with raw(db_path) as conn:
        conn.execute("UPDATE jobs SET mode = 'sketch' WHERE id = ?", (job.id,))
    with pytest.raises(HistoryError, match=f"Job {job.id} has the mode 'sketch'"):
        await store.get_job(job.id)


def test_params_name_the_style_preset_and_rows_without_one_still_read() -> None:
    styled = JobParams(aspect="1:1", style="watercolor")
    assert styled.to_json() == {"aspect": "1:1", "style": "watercolor"}
    assert JobParams.from_json({"aspect": "1:1", "style": "watercolor"}) == styled
    assert JobParams.from_json({"aspect": "1:1"}).style is None  # a row from before styles
    assert JobParams.from_json({"style": 3}).extra == {"style": 3}  # kept, unread
    for bad in ("", 3):
        with pytest.raises(TypeError, match="style"):
            JobParams(style=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"loras": "tiny-ink"},
        {"loras": [("tiny-ink",)]},
        {"loras": [("", 1.0)]},
        {"loras": [("tiny-ink", "1")]},
        {"loras": [("tiny-ink", math.inf)]},
        {"reference_image": ""},
        {"reference_weight": "0.5"},
        {"reference_mode": 1},
    ],
)
def test_addon_params_refuse_values_of_the_wrong_type(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        JobParams(**bad)


async def test_addon_params_are_stored_and_read_back(store: HistoryStore, db_path: Path) -> None:
    params = JobParams(
        loras=[["tiny-ink", 0.8], ["tiny-glow", 1]],  # type: ignore[arg-type]  # as JSON gives them back
        reference_image=KEY, reference_weight=1.5, reference_mode="style",
    )
    assert params.loras == (("tiny-ink", 0.8), ("tiny-glow", 1.0))
    job = await store.create_job(new_job(params=params))
    assert json.loads(stored_params(db_path, job.id)) == {
        "loras": [["tiny-ink", 0.8], ["tiny-glow", 1.0]], "reference_image": KEY, "reference_weight": 1.5,
        "reference_mode": "style",
    }
    record = await store.get_job(job.id)
    assert record is not None and record.params == params
    plain = await store.create_job(new_job(params=JobParams()))
    assert stored_params(db_path, plain.id) == "{}"  # no LoRAs: nothing written, as older bots wrote it
