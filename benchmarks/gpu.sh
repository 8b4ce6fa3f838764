#!/usr/bin/env bash
# The prepared GPU run (issue 19): one command on a lent GPU machine, about 7 minutes (BUDGET_S=420).
#
# Here first, once:   bash benchmarks/fetch-wheels.sh          (downloads .whl/, git-ignored)
# Then the device:    run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=480)
# Rehearsal here:     bash benchmarks/gpu.sh --dry-run        (CPU, tiny architectures, same steps; CI runs it)
#
# In order, each only while BUDGET_S lasts (docs/PERFORMANCE.md, "The first GPU run"):
#   0. the carried wheels installed; their requirements checked against the machine's packages
#   1. preflight: every module the run imports (lazy ones too), hub offline; a missing one stops the run here
#   2. Turbo + SSD-1B built with random weights (the published architectures) and saved as fp16
#   3. correctness: the gpu-marked tests (pytest -m gpu; the inductor one waits for step 5)
#   4. benchmarks/gpu_run.py bench: stock once, then the engine's rows (gpu_stages.py), each row written the
#      moment it is measured: start, full-size graphs vs eager and LoRA-then-plain, drafts (a new prompt, a
#      stage breakdown), SSD-1B final + resident memory, restart, offload on an emulated 8 GB card,
#      base + refiner, torch.compile
#   5. the inductor gpu test, if time is left
# $OUT gets env.txt, run.log, pytest.txt, rows.md, rows.jsonl (at most 8 files come back).
#
# --dry-run: the same steps on the CPU with the tiny architectures, in a throwaway virtual environment that
# holds only the GPU image's packages (benchmarks/gpu-image-packages.txt) and the carried ones
# (benchmarks/wheels.py), linked from this machine's environment: an import of anything else fails here.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
START=$(date +%s)
if [ "$DRY" = 1 ]; then
    OUT="${OUT:-/tmp/gpu-dry-out}"
    BUDGET_S="${BUDGET_S:-900}"
    if [ -z "${PYTHON:-}" ]; then
        if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
    fi
    WORK="$(mktemp -d /tmp/gpu-dry.XXXXXX)"
    trap 'rm -rf "$WORK"' EXIT
    CACHE="${BENCH_CACHE:-$WORK/cache}"
    ARGS=(--arch tiny --device cpu --repeats 1 --warmup 0 --compile-backend aot_eager)
else
    OUT="${OUT:-/tmp/gpu-out}"
    BUDGET_S="${BUDGET_S:-420}"
    PYTHON=python3
    CACHE="${BENCH_CACHE:-/tmp/bench-cache}"
    ARGS=(--arch full --device cuda --repeats 3)
fi
DEADLINE=$((START + BUDGET_S))
mkdir -p "$OUT" "$CACHE"
LOG="$OUT/run.log"
export PYTHONUNBUFFERED=1 ENGINE_CACHE_DIR="$CACHE" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
left() { local l=$((DEADLINE - $(date +%s))); [ "$l" -gt 1 ] && echo "$l" || echo 1; }  # `timeout 0` would never stop
say() { echo "[gpu.sh $(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
status=0

# 0. The packages: the machine's own plus the carried wheels (dry run: a throwaway environment of the same).
if [ "$DRY" = 1 ]; then
    "$PYTHON" -m venv --without-pip "$WORK/venv" || { say "could not make the dry run's environment"; exit 1; }
    SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PYTHON" benchmarks/wheels.py site "$SITE" | tee -a "$LOG" || { say "could not link the dry run's packages"; exit 1; }
    CARRIED=$("$PYTHON" benchmarks/wheels.py pins | sed 's/==.*//')
    PY="$WORK/venv/bin/python"
    export PYTHONPATH="$PWD"
else
    PY=python3
    if ls .whl/*.whl >/dev/null 2>&1; then
        SITE=/tmp/site
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            2>&1 | tee -a "$LOG" || { say "wheel install failed"; exit 1; }
        export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
        CARRIED=""
    else
        say "no .whl/ carried: run benchmarks/fetch-wheels.sh here and carry [\".whl\"]; trying the machine's own packages"
        SITE=""
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
if [ -n "${SITE:-}" ]; then
    # shellcheck disable=SC2086
    "$PY" benchmarks/wheels.py check "$SITE" $CARRIED 2>&1 | tee -a "$LOG" || say "some requirement above is not met (preflight decides)"
fi
{
    date -u +"%Y-%m-%d %H:%M UTC"
    [ "$DRY" = 1 ] && echo "DRY RUN: CPU, tiny architectures" || nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    "$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
    [ "$DRY" = 1 ] || "$PY" -m pip list 2>/dev/null | grep -iE "^(torch|diffusers|transformers|accelerate|peft|compel|pydantic|huggingface|safetensors|pillow|numpy|typing)"
    df -h /tmp | tail -1
    free -g | head -2
} > "$OUT/env.txt"
tee -a "$LOG" < "$OUT/env.txt"

# 1. Preflight: seconds, not minutes, to learn that a wheel is missing.
say "preflight: importing every module the run uses"
timeout 120 "$PY" benchmarks/preflight.py 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || { say "STOPPED: a module is missing (MISSING IMPORT above)"; exit 1; }

# 2. Turbo + SSD-1B with random weights (base + refiner are built by their stage, if time is left).
say "building Turbo + SSD-1B ($(left) s left)"
timeout "$(left)" "$PY" benchmarks/gpu_run.py build "${ARGS[@]}" --cache-dir "$CACHE" --models turbo,ssd-1b >>"$LOG" 2>&1 \
    || { say "STOPPED: building failed (run.log)"; exit 1; }

# 3. Correctness: the gpu-marked tests (tiny models on the GPU; skipped, but collected, on the CPU).
mapfile -t GPU_TESTS < <(grep -rlE "pytest\.mark\.gpu|mark\.gpu\b" tests --include='test_*.py' | sort)
INDUCTOR=tests/engine/test_gpu.py::test_inductor_compiled_drafts_match_eager_on_cuda
TIMEOUT=()  # pytest-timeout is on the image; without it --timeout would stop pytest before its first test
"$PY" -c "import pytest_timeout" 2>/dev/null && TIMEOUT=(--timeout 90)
if [ "$(left)" -gt 150 ]; then
    say "correctness: pytest -m gpu ${GPU_TESTS[*]} ($(left) s left)"
    timeout 150 "$PY" -m pytest -m gpu -q -rA -p no:cacheprovider "${TIMEOUT[@]}" --deselect "$INDUCTOR" "${GPU_TESTS[@]}" \
        >"$OUT/pytest.txt" 2>&1
    rc=$?
    tail -5 "$OUT/pytest.txt" | tee -a "$LOG"
    say "correctness: pytest exit status $rc"
    [ "$rc" -eq 0 ] || status=1
else
    say "skipping the gpu tests: $(left) s left"
fi

# 4. The tables, one process: stock once, then the engine's rows as they are measured.
say "bench ($(left) s left)"
timeout "$(left)" "$PY" benchmarks/gpu_run.py bench "${ARGS[@]}" --cache-dir "$CACHE" --out "$OUT" \
    --deadline "$DEADLINE" >>"$LOG" 2>&1
rc=$?
say "bench exit status $rc"
[ "$rc" -eq 0 ] || status=1

# 5. The inductor test compiles for a minute or more: last.
if [ "$(left)" -gt 100 ]; then
    say "inductor gpu test ($(left) s left)"
    timeout "$(left)" "$PY" -m pytest -q -rA -p no:cacheprovider "$INDUCTOR" >>"$OUT/pytest.txt" 2>&1
    rc=$?
    say "inductor gpu test: pytest exit status $rc"
    [ "$rc" -eq 0 ] || status=1
else
    say "skipping the inductor gpu test: $(left) s left"
fi

say "done in $(($(date +%s) - START)) s: $(ls "$OUT" | tr '\n' ' ')"
[ -f "$OUT/rows.md" ] && cat "$OUT/rows.md"
exit $status
