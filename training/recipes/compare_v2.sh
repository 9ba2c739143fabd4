#!/usr/bin/env bash
# The comparison runs behind v2's choices (weights/v2.md, "Runs compared"), at a budget one CPU
# session affords: every run is ONE epoch on the same seeded half of v2's train split, so the runs
# differ in one setting each and are compared with each other, not with the promoted 3-epoch v2.
# Each run is evaluated exactly like v2 (thresholds on val + held-out calibration sources, metrics
# on test and on the held-out sources). Resumable: a finished run or evaluation is skipped.
# Run from the repository root after the v2 recipe's step 1 (`make dataset`):
#   nice -n 10 training/recipes/compare_v2.sh      # about 15 min a run on 2 cores; minutes on a GPU
#   EPOCHS=3 DEVICE=0 RUNS=/work/runs-v3 training/recipes/compare_v2.sh   # the longer budget, on a GPU
#   .venv/bin/python -m training compare $RUNS/compare/*/    # the table
set -euo pipefail
SHARED=${WILDSCREEN_SHARED:-../shared}
RUNS=${RUNS:-/work/runs-v2}/compare
T=".venv/bin/python -m training"
DATASET=data/default/dataset
mkdir -p "$RUNS"

# The half of the train split (seed 0) with the composites it drew, and the same half without them.
.venv/bin/python - "$DATASET" "$RUNS" <<'PY'
import random, sys
from pathlib import Path
import yaml
dataset, runs = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
lines = [l.strip() for l in (dataset / "train.txt").read_text().splitlines() if l.strip()]
half = sorted(random.Random(0).sample(lines, len(lines) // 2))
spec = yaml.safe_load((dataset / "data.yaml").read_text())
for name, keep in {"half": half, "half-no-composites": [l for l in half if "/composites/" not in l]}.items():
    listing = runs / f"{name}.txt"
    listing.write_text("".join(str(dataset / l.removeprefix("./")) + "\n" for l in keep))
    (runs / f"{name}.yaml").write_text(yaml.safe_dump({**spec, "path": str(dataset), "train": str(listing)}))
    print(f"{name}: {len(keep)} images, {sum('/composites/' in l for l in keep)} composites")
PY

run() {  # name, then train options (key=value Ultralytics arguments last)
  local name=$1; shift
  [ -f "$RUNS/$name/weights/best.pt" ] || $T train --epochs "${EPOCHS:-1}" --batch 16 --device "${DEVICE:-cpu}" \
    --project "$RUNS" --name "$name" "$@" close_mosaic=1
  [ -f "$RUNS/$name/evaluation/metrics.json" ] || $T evaluate --model "$RUNS/$name/weights/best.pt" \
    --data $DATASET/data.yaml --device "${DEVICE:-cpu}" --out "$RUNS/$name/evaluation" \
    --calibration-split val,calibration --review-budget 0.03
}
run yolo11n-320      --data "$RUNS/half.yaml" --model "$SHARED/weights/yolo11n-coco.pt" --imgsz 320
run yolov5nu-320     --data "$RUNS/half.yaml" --model "$SHARED/weights/yolov5nu-coco.pt" --imgsz 320
run yolo11n-320-no-composites --data "$RUNS/half-no-composites.yaml" --model "$SHARED/weights/yolo11n-coco.pt" --imgsz 320
run yolo11n-320-frozen10 --data "$RUNS/half.yaml" --model "$SHARED/weights/yolo11n-coco.pt" --imgsz 320 --freeze 10
run yolo11n-416      --data "$RUNS/half.yaml" --model "$SHARED/weights/yolo11n-coco.pt" --imgsz 416
# (No warm-up variant: Ultralytics 8.4 caps the warm-up at epochs - 1, so a one-epoch run has none;
#  a warmup_epochs=0.3 run reproduced yolo11n-320 to the last digit. Runs are deterministic per seed.)
# The noise floor: the first run again with another seed. A difference smaller than this is not one.
run yolo11n-320-seed1 --data "$RUNS/half.yaml" --model "$SHARED/weights/yolo11n-coco.pt" --imgsz 320 --seed 1
