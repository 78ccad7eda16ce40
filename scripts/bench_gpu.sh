#!/usr/bin/env bash
# The prepared GPU check of issue 19, for a CUDA machine (run from the repository root,
# with the venv of `make install` in .venv):
#   scripts/bench_gpu.sh bench   # img/s of every model at its recipe's size, fp32 / bf16 /
#                                # fp16 (+ channels_last); DCGAN-64 beside the hand-written
#                                # loop incl. compile; 1 vs 2 GPUs under torchrun if there are 2
#   scripts/bench_gpu.sh tests   # the fast suite with CUDA visible, then tests/test_cuda.py
#                                # with its slow cases
# Results go to $OUT (default ./bench_gpu_out): one JSON per measurement and a log; the
# figures go into docs/BENCHMARKS.md by hand, with the GPU's name.
# STEPS (default 20) sets the timed steps; EXTRA adds overrides to every measurement
# (e.g. EXTRA="model.width=8 trainer.batch_size=8 trainer.device=cpu" to check the
# script itself on a CPU, with VARIANTS=fp32 REF_VARIANTS=fp32: fp16 and compile are
# slow there).
set -euo pipefail
part=${1:-bench}
OUT=${OUT:-bench_gpu_out}
STEPS=${STEPS:-20}
PY=${PY:-.venv/bin/python}
read -r -a EXTRA <<<"${EXTRA:-}"
mkdir -p "$OUT"
log() { echo "$*" | tee -a "$OUT/log.txt"; }

ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [[ "$ngpu" == 0 && "${EXTRA[*]}" != *trainer.device=cpu* ]]; then
  echo "bench_gpu: no CUDA device is visible (torch.cuda.device_count() == 0); run it on a GPU machine" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"

if [[ "$part" == tests ]]; then
  log "== fast suite with CUDA visible"
  "$PY" -m pytest -m "not slow" -q -x -p no:cacheprovider 2>&1 | tail -n 15 | tee -a "$OUT/log.txt"
  log "== tests/test_cuda.py, slow cases included"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 15 | tee -a "$OUT/log.txt"
  exit 0
fi

# model  resolution  channels  classes: each recipe at the size of its paper's data
# (MNIST-sized models at 28x28x1, the CIFAR-10 recipes at 32x32x3, DCGAN and WGAN at 64)
MODELS="vanilla 28 1 0
cgan 28 1 10
infogan 28 1 0
lsgan 28 1 0
dragan 28 1 0
acgan 28 1 10
ebgan 28 1 0
began 32 3 0
dcgan 64 3 0
wgan 64 3 0
wgan_gp 64 3 0
sngan 32 3 0
sngan_resnet 32 3 0
sagan 32 3 0
biggan 32 3 10
stylegan 32 3 0"
VARIANTS=${VARIANTS:-fp32,bf16,fp16,bf16+channels_last}
REF_VARIANTS=${REF_VARIANTS:-$VARIANTS,compile,bf16+channels_last+compile}

log "== DCGAN-64 batch 64 beside the hand-written loop"
"$PY" scripts/bench_throughput.py --compare-reference --steps "$STEPS" --repeats 2 \
  trainer.batch_size=64 "${EXTRA[@]}" --variants "$REF_VARIANTS" \
  --json "$OUT/dcgan_vs_reference.json" 2>&1 | tee -a "$OUT/log.txt"

while read -r model res ch classes; do
  log "== $model at ${res}x${res}x${ch}"
  "$PY" scripts/bench_throughput.py --in-process --steps "$STEPS" --repeats 1 model="$model" \
    dataset.resolution="$res" dataset.channels="$ch" dataset.num_classes="$classes" \
    "${EXTRA[@]}" --variants "$VARIANTS" --json "$OUT/$model.json" 2>&1 | tail -n 6 \
    | tee -a "$OUT/log.txt" || log "bench_gpu: $model failed (see above)"
done <<<"$MODELS"

if [[ "$ngpu" -ge 2 ]]; then
  for n in 1 2; do
    log "== DCGAN-64 batch 128 (global) on $n GPU(s), torchrun"
    dir="$OUT/torchrun_$n"
    "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" -m ganrun train \
      model=dcgan dataset=fake dataset.resolution=64 trainer.batch_size=128 \
      trainer.steps=$((10 * STEPS)) \
      trainer.log_every="$STEPS" trainer.progress=false logger=none hydra.run.dir="$dir" \
      2>&1 | grep -E "img/s|done:" | tail -n 3 | tee -a "$OUT/log.txt"
  done
else
  log "== one GPU: no 1 vs 2 GPU comparison"
fi
