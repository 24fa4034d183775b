#!/bin/bash
# refsim on a GPU machine (Python 3.12, CUDA 13): the gpu-marked refsim tests, then a spec on cuda_standalone.
#
# Prepare here (build/ is git-ignored, so nothing of this is committed):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d build/devcheck/whl brian2==2.10.1 brian2cuda==1.0b1
#   cp <spec.npz> build/devcheck/spec.npz
# Run there (device tool), carrying build/devcheck and data/MNIST:
#   bash benchmarks/refsim_gpu_check.sh        [IMAGES=100 STEPS=200 DEVICES="cuda_standalone cpp_standalone"]
# Results (logs, records) go to $OUT.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"; SITE=$(mktemp -d); BUILD=$(mktemp -d)
SPEC=${SPEC:-build/devcheck/spec.npz}; IMAGES=${IMAGES:-100}; STEPS=${STEPS:-200}
DEVICES=${DEVICES:-cuda_standalone cpp_standalone}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
  build/devcheck/whl/*.whl || exit 3
export PYTHONPATH=$SITE:$PWD
python3 -c "import brian2, brian2cuda, numpy, sys; print('python', sys.version.split()[0], 'brian2', \
brian2.__version__, 'brian2cuda', brian2cuda.__version__, 'numpy', numpy.__version__)"
nvidia-smi -L; nvcc --version | tail -1; nproc
echo "== pytest -m gpu tests/refsim"
timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/refsim -rs 2>&1 | tail -30 | tee "$OUT/pytest_gpu.log"
for dev in $DEVICES; do
  echo "== $SPEC: $IMAGES images x $STEPS steps on $dev"
  timeout 300 python3 -m refsim run --spec "$SPEC" --dataset mnist --split test --root data --images "$IMAGES" \
    --steps "$STEPS" --device "$dev" --input spikes --batch-size "$IMAGES" --build-dir "$BUILD" \
    --out "$OUT/record_$dev.npz" 2>&1 | tr '\r' '\n' | grep -v "img/s\]\|SyntaxWarning\|py.warnings\|nvcc warning" \
    | tail -4 | tee "$OUT/cli_$dev.log"
done
