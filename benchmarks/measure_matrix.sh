#!/usr/bin/env bash
# Run the GPU measurement matrix (benchmarks/measure_matrix.py) on a GPU machine, start to finish.
#
#   bash benchmarks/measure_matrix.sh                 # default matrix, 480 s budget, hard stop at 570 s
#   BUDGET_S=300 bash benchmarks/measure_matrix.sh    # a shorter budget
#   bash benchmarks/measure_matrix.sh --only 8b       # extra arguments go to measure_matrix.py
#
# Needs python3 with torch (CUDA), transformers and peft; installs them with pip only when they are missing
# (on a machine without a package index, bring them as wheels). vramplan itself runs from src/ (no install).
# Results: benchmarks/measurements/<gpu>-<date>.jsonl, or $OUT/<gpu>-<date>.jsonl when $OUT is set
# (a sandbox that returns files from $OUT); copy that file into benchmarks/measurements/ and commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, transformers, peft" 2>/dev/null; then
    echo "installing torch, transformers, peft ..." >&2
    "$PY" -m pip install -q torch transformers peft || { echo "cannot install torch/transformers/peft" >&2; exit 1; }
fi
if [ -z "${ALLOW_CPU:-}" ]; then  # ALLOW_CPU=1 ... --matrix tiny --allow-cpu: a dry run of this script on a CPU
    "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
OUT_DIR=${OUT:-benchmarks/measurements}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
"$PY" -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| peft', peft.__version__)"
timeout --signal=INT "${TIMEOUT_S:-570}" "$PY" benchmarks/measure_matrix.py --budget-s "${BUDGET_S:-480}" \
    --output-dir "$OUT_DIR" "$@"
