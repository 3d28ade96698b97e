#!/usr/bin/env bash
# The one prepared GPU run (see run.py). On the device: `cd .gpu && PYTHONUNBUFFERED=1 bash run.sh`.
# .gpu holds a copy of this branch's minescape/ package, experiments/oscd_gpu/*.py and the prepared oscd10.npz.
set -o pipefail
export PYTHONPATH="$PWD" CUBLAS_WORKSPACE_CONFIG=:4096:8
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 oscd_gpu/run.py --data oscd10.npz --out "$OUT/run" --fold-seconds "${FOLD_SECONDS:-22}" \
    --final-seconds "${FINAL_SECONDS:-30}" --deadline "${DEADLINE:-400}" "$@" 2>&1 \
    | grep -v "━" | tee "$OUT/log.txt"
# bring back what fits (8 files at most, 2 folders deep): results, log, GPU samples, the final model and card
cp "$OUT/run/results.json" "$OUT/run/smi.csv" "$OUT/" 2>/dev/null
cp "$OUT/run/final/model.pt" "$OUT/final_model.pt" 2>/dev/null
cp "$OUT/run/final/model.json" "$OUT/final_model.json" 2>/dev/null
cp "$OUT/run/final/train_log.json" "$OUT/final_train_log.json" 2>/dev/null
rm -rf "$OUT/run"
ls -la "$OUT"
