#!/usr/bin/env bash
# One short run that checks the GPU paths on a machine with CUDA (target: under 5 minutes).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# 1. the CUDA tests (dictionary, solvers in float64 and float32, SG training, nccl sharded solve);
# 2. the sharded solve through torchrun on nccl (every visible GPU, at most 2);
# 3. the LIF and solver benchmarks in their --quick sizes.
# Each step has its own time limit; the script stops at the first failure. Results (JSON) go to
# OUT_DIR (default: a new temporary folder); nothing outside it is written.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-src}"
OUT="${1:-$(mktemp -d -t convexsnn-gpu-XXXXXX)}"
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - start )) s elapsed)"; }

python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA is not available on this machine (torch %s)" % torch.__version__)
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs:",
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
PY

step "GPU tests"
timeout 150 python -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py \
    "tests/test_distributed.py::test_sharded_solve_on_cuda_with_nccl"

step "sharded solve under torchrun (nccl)"
NGPU=$(python -c "import torch; print(min(2, torch.cuda.device_count()))")
python - "$OUT" <<'PY'
import sys, numpy as np, torch
from convexsnn.dictionary import build_dictionary
from convexsnn.tasks import load_task
from convexsnn.witnesses import gaussian_witnesses
task = load_task("xor", T=8, n_train=4000, n_val=20, n_test=20, seed=0)
X, y = task.train.X, task.train.y
w = gaussian_witnesses(X.shape[2], n_branches=512, hidden_widths=[16, 16], seed=0, scale=2.0)
D = build_dictionary(w, X, device="cuda").matrix(torch.float64)
np.save(sys.argv[1] + "/D.npy", D.numpy().astype(np.uint8))
np.save(sys.argv[1] + "/y.npy", y.numpy())
print("dictionary", tuple(D.shape))
PY
timeout 120 torchrun --standalone --nproc-per-node "$NGPU" -m convexsnn.distributed.launch \
    --dictionary "$OUT/D.npy" --targets "$OUT/y.npy" --loss softmax --penalty l1 --reg 1.0 \
    --tol 1e-8 --device cuda --out "$OUT/sharded" --force
python -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['algorithm'], 'rel_gap', c['rel_gap'], 'converged', c['converged'], c['info'].get('device'), 'ranks', c['info'].get('world_size'))" "$OUT/sharded/certificate.json"

step "LIF benchmark (--quick)"
timeout 60 python benchmarks/bench_lif.py --quick --json "$OUT/bench_lif.json"

step "solver benchmark (--quick, no cvxpy)"
timeout 60 python benchmarks/bench_solvers.py --quick --no-cvxpy --json "$OUT/bench_solvers.json"

step "done: results in $OUT"
