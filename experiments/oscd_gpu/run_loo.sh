#!/usr/bin/env bash
# One prepared GPU call: leave-one-city-out with loo.py (arguments passed on), results into $OUT.
# On the device, from the repository root, with .gpu/oscd10.npz carried (prepare.py writes it):
#   OUT=/tmp/out bash experiments/oscd_gpu/run_loo.sh --members fc-ef:0 --batch 16 --steps 200 ...
# A rehearsal on a CPU (the script's own steps, what comes back), before spending device time:
#   LOO_ALLOW_CPU=1 PYTHON=.venv/bin/python OUT=/tmp/out bash experiments/oscd_gpu/run_loo.sh --tiny --only bercy,paris
set -o pipefail
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; lscpu | grep -i "model name"
  lscpu | grep -o -w "amx_bf16\|avx512_bf16" | sort -u | tr '\n' ' '; echo
  "$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda',
torch.cuda.is_available())"; } 2>&1 | tee "$OUT/machine.txt"
[ -n "$LOO_ALLOW_CPU" ] || "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA: stop"; exit 1; }
rm -rf /tmp/loo  # a rerun on a warm machine: no fold of an earlier run may be scored as this run's
"$PY" experiments/oscd_gpu/loo.py --data .gpu/oscd10.npz --out /tmp/loo "$@" 2>&1 | grep -v "━" \
    | tee "$OUT/log.txt"
cp /tmp/loo/results.json /tmp/loo/smi.csv /tmp/loo/test_probs.npz /tmp/loo/val_probs.npz "$OUT/" 2>/dev/null
(cd /tmp/loo && tar czf "$OUT/folds.tgz" fold_*.json fold_*.log fold_*/m*/train_log.json fold_*/m*/model.json)
ls -la "$OUT"
