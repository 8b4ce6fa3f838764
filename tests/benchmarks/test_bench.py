"""The benchmark script runs end to end on the tiny preset and prints every row (CI smoke run)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench
from benchmarks.plan import ROW_NAMES


@pytest.mark.slow
def test_bench_tiny_quick_prints_every_row(tiny_cache_dir, tmp_path, capsys):
    out = tmp_path / "bench.md"
    rc = bench.main(
        ["--preset", "tiny", "--device", "cpu", "--quick", "--repeats", "1", "--warmup", "0",
         "--cache-dir", str(tiny_cache_dir), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    table = out.read_text()
    assert table in printed
    assert "| work | stock | engine | ratio (engine/stock) | target (issue 5) |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| work")]
    for name in ROW_NAMES.values():
        assert sum(row.startswith(f"| {name}") for row in rows) == 1, name
    data = json.loads(out.with_suffix(".json").read_text())
    assert {r["key"] for r in data["rows"]} == set(ROW_NAMES)
    assert not any(r["error"] for r in data["rows"])
    for row in data["rows"]:
        if row["key"].startswith("same_"):  # float32 on a CPU: the engine makes the stock image exactly
            assert row["engine_value"] is not None and row["engine_value"] <= 0.5, row
        else:
            assert row["stock_value"] and row["engine_value"], row
    # The steps table (issue 10): a burst of 16 one-image drafts is one batch once batching is on, and a
    # reroll runs no text encoder once the prompt cache is on (before it, once per reroll).
    steps = {s["key"]: s for s in data["steps"]}
    assert list(steps)[:6] == ["eager", "batching", "prompt_cache", "taesd", "fp16_vae", "kernels"]
    assert all(not s["errors"] for s in steps.values()), steps
    assert steps["eager"]["batches"][0] != [16] and steps["eager"]["reroll_encoder_runs"] == 1
    def batched(runs: list[list[int]]) -> bool:
        # One batch of 16, or two on a loaded machine where submitting 16 jobs outlasts the 4 ms gather
        # window; without batching the burst runs as many batches as the worker finds jobs.
        return len(runs) == 1 and len(runs[0]) <= 2 and max(runs[0]) >= 8 and sum(runs[0]) == 16

    for key in ("batching", "prompt_cache", "taesd", "kernels"):
        assert batched(steps[key]["batches"]), (key, steps[key]["batches"])
        assert {"text", "unet", "decode"} <= set(steps[key]["stages"])
    for key in ("prompt_cache", "taesd", "fp16_vae", "kernels", "cutoff"):
        assert steps[key]["reroll_encoder_runs"] == 0, key
    assert "## Steps (issue 10)" in table
    assert batched(data["extras"]["engine"]["batches"]), data["extras"]["engine"]["batches"]
