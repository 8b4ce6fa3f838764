#!/usr/bin/env bash
# The prepared GPU run (issue 10): one command on a lent GPU machine (the device tool's H200).
#
# Here first, once:   bash benchmarks/fetch-wheels.sh          (downloads .whl/, git-ignored)
# Then the device:    run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=600)
#
# It installs the carried wheels (diffusers is not on the machine and nothing can be fetched there),
# builds the full-size SDXL-family architectures with random weights (engine/architectures.json, the
# published configs; saved once as fp16 under /tmp), then runs, most important first, each within
# what is left of BUDGET_S (default 540 s, under the tool's 600 s limit):
#   1. bench.md      stock vs engine (CUDA graphs, no compile), the steps table, restart to first draft
#   2. offload.md    the same engine in ENGINE_MEMORY=offload (the 8 GB mode): memory, finals
#   3. compile.md    drafts with torch.compile (reduce-overhead): cold start, warm restart, recompiles
# Everything lands under $OUT (at most 8 files come back): env.txt, run.log and each table's .md/.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-out}"
BUDGET_S="${BUDGET_S:-540}"
CACHE="${BENCH_CACHE:-/tmp/bench-cache}"
mkdir -p "$OUT" "$CACHE"
export PYTHONUNBUFFERED=1 ENGINE_CACHE_DIR="$CACHE"
START=$(date +%s)
LOG="$OUT/run.log"
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
say() { echo "[gpu.sh $(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { say "wheel install failed"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    say "no .whl/ carried: using the machine's own packages"
fi
{
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    python3 -c "import sys, torch, diffusers, transformers; print(sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" 2>&1
    df -h /tmp | tail -1
    free -g | head -2
} > "$OUT/env.txt"
cat "$OUT/env.txt" | tee -a "$LOG"
python3 -c "import diffusers" 2>/dev/null || { say "diffusers is not importable: carry .whl (benchmarks/fetch-wheels.sh)"; exit 1; }

BENCH=(python3 benchmarks/bench.py --arch full --device cuda --cache-dir "$CACHE")
status=0

say "building the random full-size pipelines (once; fp16, about 18 GB)"
timeout "$(left)" "${BENCH[@]}" --prepare-only >>"$LOG" 2>&1 || { say "building failed (see run.log)"; exit 1; }

run() {  # run NAME MIN_SECONDS ARGS...: one bench invocation if at least MIN_SECONDS are left
    local name="$1" need="$2"
    shift 2
    if [ "$(left)" -lt "$need" ]; then
        say "skipping $name: $(left) s left, it needs about $need s"
        return
    fi
    say "$name ($(left) s left)"
    timeout "$(left)" "${BENCH[@]}" "$@" --out "$OUT/$name.md" >>"$LOG" 2>&1
    local rc=$?
    say "$name finished with exit status $rc"
    [ "$rc" -eq 0 ] || status=1
}

# 1. Everything but compile: the rows of issue 10's targets, the steps table, restart (eager + CUDA graphs).
run bench 150 --repeats 5 --no-compile --ladder --no-ladder-compile --restart
# 2. The 8 GB mode: finals offloaded by accelerate, Turbo resident, no CUDA graphs for the finals.
run offload 60 --repeats 3 --no-compile --engine-memory offload --no-ladder --no-restart
# 3. torch.compile with CUDA graphs for the drafts (SDXL's UNet took 84-103 s to compile here once):
#    start row = cold cache, restart row = a new process with the cache this run left on disk.
run compile 200 --repeats 5 --only draft --compile --compile-models turbo --no-ladder --restart

say "done: $(ls "$OUT" | tr '\n' ' ')"
for f in bench offload compile; do
    [ -f "$OUT/$f.md" ] && { echo; echo "=== $f.md"; cat "$OUT/$f.md"; }
done
exit $status
