#!/usr/bin/env bash
# How v3 (v2's detector + an image-level head) was made from ../shared, on a 2-core CPU. Every step
# resumes: features are cached by image sha256 in $RUN (outside the repository), so a rerun, a new
# seizure folder or a reviewer export computes only the photos it has not seen.
# Run from the repository root after `make venv`.
set -euo pipefail
SHARED=${WILDSCREEN_SHARED:-../shared}
RUN=${RUN:-/work/features-run}
T=".venv/bin/python -m training"
export WILDSCREEN_SHARED=$SHARED

# 1. Backbone features of every labelled photo of ../shared (training/imagelevel/sources.py reads the
#    folders; training/recipes/default_v3.py holds whole sources out). Lite0 with 2x2 and 3x3 tiles and
#    Lite2 with 2x2 tiles, for the comparison in weights/v3.md (about 20 + 20 minutes on one core).
.venv/bin/python -m training.imagelevel.features --out "$RUN" --backbone lite0 --tiles 2,3 --threads 1
.venv/bin/python -m training.imagelevel.features --out "$RUN" --backbone lite2 --tiles 2 --threads 1

# 2. The detector's scores on the calibration and held-out photos (v2 through the serving engine), so that
#    both models are calibrated together and judged on the same photos.
$T head-detector --run "$RUN" --version v2

# 3. Every variant fitted, calibrated (1.5% review budget per class, shared with the detector) and scored on
#    the held-out sources: $RUN/heads/heldout.md is the card's table.
$T head-evaluate --run "$RUN" --out "$RUN/heads"

# 4. The chosen variant into weights/ as v3 (the detector's files are shared, not copied).
$T head-promote "$RUN/heads/lite2-whole" --weights weights --detector v2 --version v3 --card v3.md \
    --limitations training/recipes/default_v3_limitations.json

# 5. Known-image matching's embedding signal over the same Lite2 whole-image features: a projection fitted
#    on the training photos, a threshold that at most 1 in 10^6 unrelated pairs of the other photos reach,
#    attached to v3 (its head runs that backbone). Never refit under the same version: banks hold vectors
#    of the name it prints (weights/manifest.json, v3.embedding.name).
$T embedding-fit --run "$RUN" --out "$RUN/embedding" --backbone lite2 --dim 128 --attach v3 --weights weights
