#!/usr/bin/env bash
# One prepared command for a lent GPU machine (the `device` tool): install the carried wheels,
# run the benchmark on the GPU, print the table. Finishes well inside 8 minutes.
#
# Here, once:   echo /.whl/ >> .git/info/exclude
#               python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#                 -d .whl ultralytics==8.4.190 ultralytics-thop grpcio==1.85.3 grpcio-health-checking==1.85.1 \
#                 grpcio-reflection==1.85.1 protobuf prometheus-client onnxruntime
# Then:         device run, carry [".whl"], command "bash bench/gpu.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
out=${OUT:-/tmp}
# 1024 px JPEGs (../shared does not travel: synthetic), big batches, many clients.
timeout 420 python3 -m bench --device cuda --count 256 --min-side 1024 --max-side 1024 \
  --max-batch-size 64 --max-batch-delay-ms 4 --concurrency 1 16 64 256 --seconds 15 \
  --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
