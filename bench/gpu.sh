#!/usr/bin/env bash
# One prepared command for a lent GPU machine (the `device` tool): install the carried wheels,
# benchmark on the GPU, run the CUDA tests, and (when .gpudata is carried) train on the GPU.
# About 9 minutes (TensorRT build up to 4 where TensorRT is installed, bench 3, training 5 beside
# the tests: STEPS="bench tests" when the TensorRT build runs); what matters lands in $OUT.
#
# Here, once (the machine has torch, numpy, OpenCV, Pillow, pytest, prometheus-client; not these):
#   printf '/.whl/\n/.benchshared/\n/.gpudata/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl ultralytics==8.4.190 ultralytics-thop==2.2.3 grpcio==1.85.3 grpcio-health-checking==1.85.1 \
#     grpcio-reflection==1.85.1 protobuf==7.36.2
#   ../shared does not travel: a few photos per bench folder (<= 1200 px) go into .benchshared/data/...
#   optional: .gpudata/dataset (train and val at 320 px, same layout) and .gpudata/<base>.pt
# Then:   device run, carry [".whl", ".benchshared", ".gpudata"], command "bash bench/gpu.sh"
#         (STEPS="bench" runs the benchmark alone; WORKERS sets the server's --workers, default 4)
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# No polars there (40 MB of wheels): Ultralytics' trainer only reads results.csv back with it, in a
# try, so an empty stand-in module lets it train (with plots=False: its plots need the real one).
mkdir -p /tmp/site/polars && echo '"""Empty stand-in: see bench/gpu.sh."""' > /tmp/site/polars/__init__.py
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 YOLO_OFFLINE=1  # as server.offline.stay_offline() does in Python
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
shared=.benchshared; [ -d "$shared" ] || shared=/nonexistent  # synthetic images then
base=$(ls .gpudata/*.pt 2>/dev/null | head -1)

# 1. The benchmark, alone on the machine: the candidate model when carried, else the shipped one.
weights=weights
if [ -n "$base" ]; then
  python3 -c "import sys; from pathlib import Path; from training.steps.promote import promote; \
promote(Path(sys.argv[1]), Path('/tmp/w'), version='bench', notes='benchmark copy')" "$base" && weights=/tmp/w
fi
steps=${STEPS:-bench tests train}
# 1a. TensorRT: built once here (FP16, dynamic batch up to 64) and cached in $weights/cache before
# the server's workers start, so they find it instead of racing to build it. Needs the tensorrt
# package on the machine (too big to carry): without it the server says so and serves torch-fp16.
python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>/dev/null || echo "no tensorrt here: torch-fp16 serves"
timeout 240 python3 -c "import sys; from pathlib import Path; from server.offline import stay_offline; stay_offline(); from server.core.engine import InferenceEngine; \
from server.core.manifest import WeightsStore; e = InferenceEngine.load(WeightsStore(Path(sys.argv[1])), None, 'cuda', 'auto', 0, 64); \
print('backend', e.backend.name, '--', e.backend_reason)" "$weights" 2>&1 | tail -3 | tee "$out/tensorrt.txt"
if [[ $steps == *bench* ]]; then
timeout 200 python3 -m bench --weights "$weights" --device cuda --shared "$shared" --count 128 \
  --min-side 1024 --max-side 1024 --max-batch-size 64 --max-batch-delay-ms 2 --concurrency 1 16 64 256 \
  --seconds 8 --server-workers "${WORKERS:-4}" --client-processes 6 --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
fi

# 2. Training on the GPU (in the background) while the CUDA tests run.
if [[ $steps == *train* ]] && [ -n "$base" ] && [ -d .gpudata/dataset ]; then
  sed "s#^path:.*#path: $PWD/.gpudata/dataset#" .gpudata/dataset/data.yaml > /tmp/gpudata.yaml
  timeout 300 python3 -m training train --data /tmp/gpudata.yaml --model "$base" --imgsz 320 --epochs 300 \
    --batch 64 --freeze 0 --device 0 --workers 10 --patience 40 --project /tmp/runs --name default-g \
    time=0.07 amp=False cache=ram plots=False > "$out/train_gpu.log" 2>&1 &
  train=$!
fi
if [[ $steps == *tests* ]]; then
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/server/core/test_cuda.py tests/server/core/test_fast_paths.py \
  tests/server/core/test_tensorrt.py \
  2>&1 | tee "$out/cuda_tests.txt"
fi
if [ -n "${train:-}" ]; then
  wait "$train"; echo "training exit $?"
  tail -c 3000 "$out/train_gpu.log" | tr '\r' '\n' | grep -v "━" | tail -20
  (cd /tmp/runs/default-g && tar czf "$out/default-g.tar.gz" --exclude=last.pt --exclude='*.jpg' .)
fi
