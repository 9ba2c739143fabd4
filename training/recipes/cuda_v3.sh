#!/usr/bin/env bash
# One prepared command for a lent CUDA machine: v2's detector trained on for EPOCHS more epochs
# (resumable), the image-level head refitted, both evaluated on the pack's held-out photos, in minutes.
# Run from the repository root, with a pack made by `python -m training.recipes.cuda_pack`:
#   on the lent GPU (the pack carried, $OUT set there):  bash training/recipes/cuda_v3.sh data/cuda-pack
#   on a CPU, tiny, to check this script (a `--max-mb 2 --no-wheels` pack):
#     DEVICE=cpu EPOCHS=1 FRACTION=0.02 WORKERS=1 bash training/recipes/cuda_v3.sh /tmp/tiny-pack
#   on a fresh machine, going on from an earlier call's last.pt (carried with best.pt, wildscreen_run.json):
#     RESUME=runs/cuda-v3-resume/last.pt bash training/recipes/cuda_v3.sh data/cuda-pack
# The knobs, with their defaults:
DEVICE=${DEVICE:-0}                  # Ultralytics' device: 0 (the GPU) or cpu
EPOCHS=${EPOCHS:-30}
BATCH=${BATCH:-64}
IMGSZ=${IMGSZ:-320}                  # v2's training and serving size
FRACTION=${FRACTION:-1.0}            # of the packed training images
WORKERS=${WORKERS:-8}                # data loader processes (the lent machine has 16 cores)
THREADS=${THREADS:-8}                # ONNX Runtime threads for v2's scores
AMP=${AMP:-false}                    # fp32 (TF32 convolutions on an H100); bf16 skips Ultralytics' AMP check;
                                     # true runs that check, whose yolo26n.pt download cannot succeed offline
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-360}  # training stops there (resumable), so that the evaluation still fits the call
ARGS=${ARGS:-}                       # more Ultralytics key=value, e.g. "freeze=10 optimizer=SGD lr0=0.002"
WORK=${WORK:-/tmp/wildscreen-cuda-v3}
OUT=${OUT:-runs/cuda-v3-out}         # what comes back: summary.md, log.txt, best.pt, last.pt, wildscreen_run.json, run.tar.gz
set -euo pipefail
PACK=$(cd "${1:?usage: training/recipes/cuda_v3.sh PACK_DIR (made by python -m training.recipes.cuda_pack)}" && pwd)
[ -f training/recipes/cuda_v3.sh ] || { echo "run from the repository root" >&2; exit 2; }
REPO=$(pwd)
mkdir -p "$WORK" "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/log.txt") 2>&1
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
T="$PY -m training"
TORCH_DEVICE=$([ "$DEVICE" = cpu ] && echo cpu || echo "cuda:${DEVICE%%,*}")
DET=$WORK/detector
DATA=$PACK/detector/data.yaml
# Nothing may be fetched there: Ultralytics and huggingface_hub are told so, and get fonts (below).
export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1 YOLO_CONFIG_DIR=$WORK/ultralytics-config
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

phase() {  # phase NAME COMMAND...: runs it, appends NAME, seconds and how it ended to timings.tsv
  local name=$1 start code=0 ms status=ok; shift
  start=$(date +%s%N)
  echo "=== $name: $*"
  "$@" || code=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if [ "$code" = 124 ]; then status="stopped at its time limit"; elif [ "$code" != 0 ]; then status="failed ($code)"; fi
  printf '%s\t%d.%03d\t%s\n' "$name" $((ms / 1000)) $((ms % 1000)) "$status" >> "$WORK/timings.tsv"
  return "$code"
}

collect() {  # always, even after a failed phase: the run's results into $OUT (at most 8 files come back)
  set +e
  { nvidia-smi; nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv; } \
    > "$WORK/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi here (device $DEVICE)" > "$WORK/nvidia-smi.txt"
  "$PY" -m training.recipes.cuda_run summary --work "$WORK" > "$OUT/summary.md"
  for f in best.pt last.pt; do [ -f "$DET/weights/$f" ] && cp "$DET/weights/$f" "$OUT/$f"; done
  [ -f "$DET/wildscreen_run.json" ] && cp "$DET/wildscreen_run.json" "$OUT/"
  tar -czf "$OUT/run.tar.gz" -C "$WORK" --exclude='*.pt' --exclude=./head/lite2 --exclude=./ultralytics-config \
    --exclude=./site .
  cat "$OUT/summary.md"
}
trap collect EXIT

setup() {  # the packages this machine lacks, from the pack's wheels; a font for Ultralytics' plots
  mkdir -p "$YOLO_CONFIG_DIR"
  "$PY" -c 'import ultralytics' 2>/dev/null \
    || "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$WORK/site" "$PACK"/wheels/*.whl
  "$PY" - "$YOLO_CONFIG_DIR" <<'PYTHON'
import os, shutil, sys, matplotlib
for name in ("Arial.ttf", "Arial.Unicode.ttf"):  # else Ultralytics asks the network for them
    shutil.copyfile(os.path.join(matplotlib.get_data_path(), "fonts/ttf/DejaVuSans.ttf"), os.path.join(sys.argv[1], name))
PYTHON
}

evaluate() {  # evaluate NAME MODEL: thresholds set on val + calibration, measured on test and holdout
  $T evaluate --model "$2" --data "$DATA" --out "$WORK/eval-$1" --calibration-split val,calibration \
    --review-budget 0.03 --device "$TORCH_DEVICE" > "$WORK/eval-$1.txt" 2>&1  # cuda:0: the engine's torch.device
}

# 0. Setup. Ultralytics' trainer imports polars (~50 MB of wheels): where it is missing, a stand-in.
phase setup setup
if [ -d "$WORK/site" ]; then export PYTHONPATH=$WORK/site:$PYTHONPATH; fi
if [ -n "${POLARS_STANDIN:-}" ] || ! "$PY" -c 'import polars' 2>/dev/null; then
  export PYTHONPATH=$REPO/training/recipes/standins:$PYTHONPATH
fi
"$PY" -c "from training.layout import Dataset; Dataset('$PACK/detector').write_data_yaml()"  # this machine's paths
{ echo "device $DEVICE, epochs $EPOCHS, batch $BATCH, imgsz $IMGSZ, fraction $FRACTION, amp $AMP${ARGS:+, $ARGS}, pack $PACK"
  "$PY" -c 'import torch, ultralytics, polars; print(f"torch {torch.__version__}, ultralytics {ultralytics.__version__}, polars {polars.__version__}")'
} | tee "$WORK/settings.txt"

# 1. The detector: from weights/v2.pt, or on from the last.pt of an unfinished run (this machine's, or RESUME's).
if [ -n "${RESUME:-}" ] && [ ! -f "$DET/weights/last.pt" ]; then
  mkdir -p "$DET/weights" && cp "$RESUME" "$DET/weights/last.pt"
  for f in best.pt wildscreen_run.json; do  # best.pt: the resumed run writes one only when it does better
    if [ -f "$(dirname "$RESUME")/$f" ]; then cp "$(dirname "$RESUME")/$f" "$DET/$([ $f = best.pt ] && echo weights/)$f"; fi
  done
  "$PY" -m training.recipes.cuda_run retarget "$DET/weights/last.pt" --data "$DATA"
fi
if [ -f "$DET/weights/last.pt" ] && ! grep -q '"completed"' "$DET/wildscreen_run.json" 2>/dev/null; then
  phase detector-train timeout --signal=INT --kill-after=60 "$TRAIN_LIMIT_S" $T train --data "$DATA" --resume \
    --project "$WORK" --name detector --device "$DEVICE" --workers "$WORKERS" || true
elif [ ! -f "$DET/weights/best.pt" ]; then
  phase detector-train timeout --signal=INT --kill-after=60 "$TRAIN_LIMIT_S" $T train --data "$DATA" \
    --model weights/v2.pt --imgsz "$IMGSZ" --epochs "$EPOCHS" --batch "$BATCH" --device "$DEVICE" \
    --workers "$WORKERS" --project "$WORK" --name detector fraction="$FRACTION" amp="$AMP" $ARGS || true
fi
grep -q '"completed"' "$DET/wildscreen_run.json" 2>/dev/null \
  || echo "detector: stopped before its last epoch: run again (or with RESUME=, see the header) to go on"

# 2. The new detector and v2 on the same packed splits.
NEW=$DET/weights/best.pt; [ -f "$NEW" ] || NEW=$DET/weights/last.pt
if [ -f "$NEW" ]; then phase evaluate-new evaluate new "$NEW" || true; fi
phase evaluate-v2 evaluate v2 weights/v2.pt || true

# 3. The head (v3's lite2/whole): features (extracted on the GPU where the backbone's wheel is installed,
#    else the pack's), v2's scores on the calibration and holdout photos, fit, calibration with v2, held-out table.
phase head-features "$PY" -m training.recipes.cuda_run head-run --pack "$PACK" --run "$WORK/head" --device "$TORCH_DEVICE" \
  && phase head-detector $T head-detector --run "$WORK/head" --shared "$PACK/head/roles" --version v2 --threads "$THREADS" \
  && phase head-fit-evaluate $T head-evaluate --run "$WORK/head" --shared "$PACK/head/roles" --detector v2 \
    --variants lite2/whole --out "$WORK/head/heads" --no-progress > "$WORK/head-evaluate.txt" || true
