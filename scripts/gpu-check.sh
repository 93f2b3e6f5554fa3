#!/usr/bin/env bash
# The GPU check, one prepared script for a machine with one CUDA GPU (at most 8 minutes on an H100):
#   1. the GPU tests (pytest -m gpu: tests/test_gpu.py), at most 200 s;
#   2. the GPU figures (benchmarks/gpu_figures.py: ResNet-20 epochs at fp32 / bf16 / compiled, a LeNet IMP
#      level, multi-ticket throughput, SNIP / SynFlow / CTS steps), at most 260 s.
# Everything lands in $OUT (default ./gpu-check): gpu-figures.json (the figures, with the tests' outcome
# added as "tests"), the two logs and nvidia-smi's view of the card. Exit status 0 when both parts passed.
#
#   scripts/gpu-check.sh            # on the GPU machine
#   scripts/gpu-check.sh --smoke    # tiny sizes: checks the script itself, on a CPU too (tests skip there)
#
# PYTHON picks the interpreter (default: .venv/bin/python when present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/gpu-check}"
mkdir -p "$OUT"
SMOKE=()
[ "${1:-}" = "--smoke" ] && SMOKE=(--smoke)

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi on this machine" > "$OUT/nvidia-smi.txt"

started=$SECONDS
timeout 200 "$PYTHON" -m pytest -m gpu -p no:cacheprovider -q -rs tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.txt"
tests=${PIPESTATUS[0]}
tests_seconds=$((SECONDS - started))

started=$SECONDS
timeout 260 "$PYTHON" benchmarks/gpu_figures.py --out "$OUT/gpu-figures.json" --multi-ticket-timeout 80 \
    "${SMOKE[@]}" 2>&1 | tee "$OUT/gpu-figures.txt"
figures=${PIPESTATUS[0]}

# The tests' outcome goes into the one JSON of figures (pytest's last line: counts passed, skipped, failed).
"$PYTHON" - "$OUT/gpu-figures.json" "$tests" "$tests_seconds" "$OUT/gpu-tests.txt" "$figures" <<'PY'
import json, re, sys
from pathlib import Path
path, exit_code, seconds, log, figures_exit = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
report = json.loads(path.read_text()) if path.exists() else {"figures": {}, "skipped": {}}
lines = log.read_text().splitlines() if log.exists() else []
lines = [line for line in lines if re.search(r"\d+ (passed|failed|skipped|errors?|deselected)\b", line)]
report["tests"] = {"command": "pytest -m gpu tests/test_gpu.py", "exit": exit_code, "seconds": seconds,
                   "summary": lines[-1] if lines else "no output", "timed_out": exit_code == 124}
report["figures_exit"] = figures_exit
path.write_text(json.dumps(report, indent=2) + "\n")
PY
echo "gpu tests: exit $tests (${tests_seconds} s); gpu figures: exit $figures; see $OUT/gpu-figures.json"
[ "$tests" -eq 0 ] && [ "$figures" -eq 0 ]
