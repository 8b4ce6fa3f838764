#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh run    set up .venv on first use, then start the bot (settings from .env; weights fetched once)
#   ./dev.sh test   set up .venv on first use, then lint, type-check and run the test suite (CPU, tiny models)
#   ./dev.sh check  set up .venv on first use, then `bot.py --check`: token, intent, torch, GPU, weights, disk
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"

setup() {
    # $1: the extras to install ("test,safety,upscale" for the tests: the safety check and the upscaler are tested for real).
    local extras="${1:-}"
    local marker="$VENV/.installed${extras:+-${extras//,/-}}"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    # Reinstall only when pyproject.toml or constraints.txt changed since the last install.
    if [ ! -f "$marker" ] || [ pyproject.toml -nt "$marker" ] || [ constraints.txt -nt "$marker" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # constraints.txt: the versions the suite passed with (pyproject.toml keeps the accepted ranges).
        "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".${extras:+[$extras]}"
        touch "$marker"
    fi
}

case "${1:-}" in
    run)
        setup
        shift
        # bot.py fetches the weights the settings name once (with progress bars) before it connects.
        exec "$VENV/bin/python" bot.py "$@"
        ;;
    check)
        setup
        shift
        exec "$VENV/bin/python" bot.py --check "$@"
        ;;
    test)
        setup "test,safety,upscale"
        shift
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy"  # files and options: [tool.mypy] in pyproject.toml
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./dev.sh run | ./dev.sh check | ./dev.sh test [pytest args]" >&2
        exit 2
        ;;
esac
