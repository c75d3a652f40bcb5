#!/usr/bin/env bash
# The fresh-machine check: a clean virtual environment, the README's install command exactly, and a short
# quickstart that must finish and print its summary. Exits non-zero naming the step that failed.
# Usage: .ci/fresh.sh [CLIPS] [STEPS]   (defaults 48 clips, 4 pre-training/alignment steps)
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
clips="${1:-48}"; steps="${2:-4}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail() { echo "fresh.sh: FAILED at step '$1' (log: $2)" >&2; tail -n 30 "$2" >&2; exit 1; }
t0=$(date +%s)
step() { echo "fresh.sh: $1 ($(( $(date +%s) - t0 )) s)"; }

step "venv"
python3 -m venv "$tmp/venv" > "$tmp/venv.log" 2>&1 || fail venv "$tmp/venv.log"
. "$tmp/venv/bin/activate"
python -m pip --version > /dev/null 2>&1 || fail venv "$tmp/venv.log"

step "install (README: pip install torch==2.13.0 && pip install -e .)"
( cd "$repo" && pip install torch==2.13.0 && pip install -e . ) > "$tmp/install.log" 2>&1 || fail install "$tmp/install.log"
command -v acula_quickstart > /dev/null || { echo "no acula_quickstart on PATH" >> "$tmp/install.log"; fail install "$tmp/install.log"; }

step "quickstart (--clips $clips --steps $steps --pretrain_steps $steps)"
( cd "$tmp" && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 acula_quickstart "$tmp/run" --clips "$clips" \
    --steps "$steps" --pretrain_steps "$steps" ) > "$tmp/quickstart.log" 2>&1 || fail quickstart "$tmp/quickstart.log"
grep -q "quickstart finished in" "$tmp/quickstart.log" || fail "quickstart summary" "$tmp/quickstart.log"
[ -f "$tmp/run/models/aligned/heads.json" ] || fail "quickstart aligned model" "$tmp/quickstart.log"

step "done"
sed -n '/quickstart finished in/,$p' "$tmp/quickstart.log"
echo "fresh.sh: passed in $(( $(date +%s) - t0 )) s"
