#!/bin/bash
# fastsim on a lent GPU (issues 4 and 7), in one device call: the gpu-marked tests, the benchmark (plain loop,
# engine with fp32 / tf32x2 / tf32x3 products, agreement with float64), a kernel profile of one engine run,
# and optionally Table 2 at a given scale with its wall time.
#
# The GPU machines' image has Python 3.12, torch 2.11, Triton 3.6, numpy, pytest, hypothesis and tqdm
# (../.library/device/KINDS.md), all fastsim needs; wheels under build/gpuwhl, if any, are installed first.
# Run there (device tool), carrying data/MNIST, and runs/specs (SPECS) or runs/models (TABLE2):
#   bash benchmarks/fastsim_gpu_session.sh       [QUICK=1 TABLE2="--images 2000 --steps 2000" SPECS="a.npz b.npz"]
# Everything it prints goes to $OUT/session.log too; JSON/Markdown results to $OUT.
# Dry run on a CPU (checks the script, not the GPU): DEVICE=cpu BENCH_ARGS="--images 16 --steps 10 --repeats 1"
#   PROFILE_IMAGES=64 TRITON_INTERPRET=1 bash benchmarks/fastsim_gpu_session.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"; SITE=$(mktemp -d)
DEVICE=${DEVICE:-cuda}; BENCH_ARGS=${BENCH_ARGS:---repeats 3}; export DEVICE PROFILE_IMAGES=${PROFILE_IMAGES:-8192}
exec > >(tee "$OUT/session.log") 2>&1
if ls build/gpuwhl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" build/gpuwhl/*.whl
fi
export PYTHONPATH=$SITE:$PWD
nvidia-smi -L; python3 -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'numpy', numpy.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
start=$(date +%s)
echo "== gpu tests (fastsim)"
timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/fastsim tests/conformance -rs 2>&1 | tail -15
echo "== fused Triton kernel against GEMM + scan, compiled for the GPU this time"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/fastsim/test_fused.py 2>&1 | tail -5
echo "== benchmark: random data-normalized MLP and CNN ($(( $(date +%s) - start )) s so far)"
timeout 300 python3 -m fastsim bench --device "$DEVICE" ${QUICK:+--quick} $BENCH_ARGS --out-dir "$OUT" 2>&1 \
  | grep -v "Warning\|warn(" | tail -20
if [ -n "${SPECS:-}" ]; then
  args=(); for s in $SPECS; do args+=(--spec "$s"); done
  echo "== benchmark: spec files $SPECS"
  mkdir -p "$OUT/trained"
  timeout 300 python3 -m fastsim bench --device "$DEVICE" --quick $BENCH_ARGS "${args[@]}" --out-dir "$OUT/trained" 2>&1 \
    | grep -v "Warning\|warn(" | tail -12
fi
echo "== kernel profile of one engine run ($(( $(date +%s) - start )) s so far)"
timeout 120 python3 - <<'EOF' 2>&1 | tail -40
import os, numpy as np, torch
from torch.profiler import ProfilerActivity, profile
from fastsim.bench import bench_images
from fastsim.simulate import simulate
from fastsim.synthetic import random_spec
device = os.environ["DEVICE"]
images, _ = bench_images(int(os.environ["PROFILE_IMAGES"]))
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
for arch, kernel in (("mlp", "torch"), ("mlp", "triton"), ("cnn", "torch")):
    spec = random_spec(arch, seed=0, calibration=images[:256])
    simulate(spec, images[:512], steps=20, device=device, kernel=kernel)
    with profile(activities=activities) as prof:
        rec = simulate(spec, images, steps=100, device=device, kernel=kernel)
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"== {arch} ({kernel}): {rec.meta['image_steps_per_s']:,.0f} image-steps/s, "
          f"batch {rec.meta['batch_size']}, chunk {rec.meta['chunk_steps']}")
    key = "cuda_time_total" if device == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=50))
EOF
if [ -n "${TABLE2:-}" ]; then
  echo "== validation table2 $TABLE2 ($(( $(date +%s) - start )) s so far)"
  t0=$(date +%s)
  timeout 400 python3 -m validation table2 $TABLE2 --device "$DEVICE" --root data --runs runs 2>&1 | tail -25
  echo "table2 wall: $(( $(date +%s) - t0 )) s"
fi
echo "== done in $(( $(date +%s) - start )) s"
