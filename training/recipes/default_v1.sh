#!/usr/bin/env bash
# How weights/v1 was made, step by step, from ../shared (about 3 hours on 2 CPU cores).
# Run from the repository root after `make venv`; every step resumes where it stopped.
set -euo pipefail
SHARED=${WILDSCREEN_SHARED:-../shared}
T=".venv/bin/python -m training"
DATA=data/default/dataset/data.yaml

# 1. The dataset: import, autolabel (segmentation, GrabCut seeds, a proposal detector), negatives,
#    check --fix, group-aware split with held-out sources. See data/default/BUILD.md afterwards.
$T build-default --shared "$SHARED" --out data/default

# 2. Fine-tune from the COCO backbone with the backbone frozen (10 layers), 320 px, 10 epochs;
#    mosaic for the first 7 (it mixes the plain museum backgrounds into other scenes).
[ -f runs/default-a/weights/best.pt ] || $T train --data $DATA --model "$SHARED/weights/yolov5nu-coco.pt" \
  --imgsz 320 --epochs 10 --batch 16 --freeze 10 --device cpu --name default-a close_mosaic=3

# 3. Compare: the same weights served at 320 and at 416 px, on the same test split.
$T evaluate --model runs/default-a/weights/best.pt --data $DATA --device cpu --out runs/default-a/evaluation-320
$T evaluate --model runs/default-a/weights/best.pt --data $DATA --device cpu --imgsz 416 --out runs/default-a/evaluation-416

# 4. Hard negatives: unused museum objects and amphibians on which the model fires become
#    background images of the training split; then a short fine-tune from run a.
$T mine data/default/work/views/mining-pool --model runs/default-a/weights/best.pt \
  --dataset data/default/dataset --source mined-negatives --min-confidence 0.25
$T check data/default/dataset
[ -f runs/default-c/weights/best.pt ] || $T train --data $DATA --model runs/default-a/weights/best.pt \
  --imgsz 320 --epochs 4 --batch 16 --freeze 10 --device cpu --name default-c close_mosaic=2 warmup_epochs=0
$T evaluate --model runs/default-c/weights/best.pt --data $DATA --device cpu --out runs/default-c/evaluation-320 \
  --card-notes training/recipes/default_v1_card.md

# (Also compared, not chosen: run g, c unfrozen for 58 epochs on a lent H100 from a 320 px copy of
#  train and val, by bench/gpu.sh with .gpudata carried; evaluated here like c. See the card.)

# 5. Export the chosen one (ONNX, checked against the .pt) and promote it.
$T export --model runs/default-c/weights/best.pt --samples data/default/dataset/images/met-ivory --max-samples 32
$T promote runs/default-c --evaluation runs/default-c/evaluation-320 --version v1
