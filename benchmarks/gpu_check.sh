#!/usr/bin/env bash
# sr_jax on one NVIDIA GPU: a fresh venv with the CUDA build of JAX, then
# benchmarks/gpu_check.py (speed at 250 px / 224 px against the goals, and
# GPU maps against CPU maps). Everything within GPU_CHECK_BUDGET_S (480).
#
#   benchmarks/gpu_check.sh              # on a Linux host with an NVIDIA GPU
#   benchmarks/gpu_check.sh --cpu-smoke  # no GPU: a tiny CPU run of the Python
#                                        # part, in the current environment
#
# Environment (all optional):
#   GPU_CHECK_VENV      where the venv goes (default: a fresh one in /tmp)
#   GPU_CHECK_BUDGET_S  seconds for the whole script (default 480)
#   JAX_VERSION         jax to install (default 0.10.2, as the CPU figures)
#   JAX_CUDA_EXTRA      cuda12 or cuda13 (default: cuda13 from driver 580 on,
#                       cuda12 below; JAX's CUDA 13 wheels need driver >= 580)
#   PIP_ARGS            extra pip arguments, e.g. for an offline host:
#                       "--no-index --find-links /path/to/wheels"
#   GPU_CHECK_SYSTEM_SITE=1  let the venv see the system's packages (a host
#                       with CUDA JAX installed then needs no download)
#   PYTHON              the Python that creates the venv (default python3)
#
# Writes benchmarks/results/gpu_check.json and prints one table. Exits 0
# when there is no GPU (after saying so); otherwise with the Python part's
# status (124 if the budget ran out: the JSON keeps the parts that finished).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
START="$(date +%s)"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

smoke=0
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (allowed: --cpu-smoke)" >&2
       exit 2 ;;
  esac
done

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
fi

if [[ "$gpus" -lt 1 ]]; then
  echo "gpu_check.sh: no NVIDIA GPU found (nvidia-smi missing or lists none):" \
       "skipping the GPU parts."
  if [[ "$smoke" -eq 1 ]]; then
    py="${PYTHON:-python3}"
    out="${TMPDIR:-/tmp}/gpu_check_cpu_smoke.json"
    echo "gpu_check.sh: --cpu-smoke: tiny CPU run of benchmarks/gpu_check.py" \
         "with $py (JSON: $out)"
    cd "$ROOT"
    JAX_PLATFORMS=cpu timeout "$(left)" "$py" benchmarks/gpu_check.py \
      --cpu_smoke --reps 1 --budget_s "$(( $(left) - 10 ))" --json "$out"
  fi
  exit 0
fi
if [[ "$gpus" -gt 1 ]]; then
  echo "gpu_check.sh: $gpus GPUs found; the check uses the first" \
       "(CUDA_VISIBLE_DEVICES=0)."
fi
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"

driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
extra="${JAX_CUDA_EXTRA:-}"
if [[ -z "$extra" ]]; then
  if [[ "${driver%%.*}" -ge 580 ]]; then extra=cuda13; else extra=cuda12; fi
fi
case "$extra" in
  cuda12|cuda13) ;;
  *) echo "gpu_check.sh: JAX_CUDA_EXTRA='$extra' must be cuda12 or cuda13" >&2
     exit 2 ;;
esac
echo "gpu_check.sh: $(nvidia-smi --query-gpu=name --format=csv,noheader |
  head -1), driver $driver: jax[$extra]==${JAX_VERSION:-0.10.2}"

venv="${GPU_CHECK_VENV:-$(mktemp -d "${TMPDIR:-/tmp}/sr_jax_gpu.XXXXXX")/venv}"
venv_args=()
[[ "${GPU_CHECK_SYSTEM_SITE:-0}" == 1 ]] && venv_args+=(--system-site-packages)
"${PYTHON:-python3}" -m venv "${venv_args[@]}" "$venv"
# shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
install() {  # keeps 150 s of the budget for the check itself
  local seconds=$(( $(left) - 150 ))
  [[ "$seconds" -gt 10 ]] || return 1
  timeout "$seconds" "$venv/bin/python" -m pip install -q ${PIP_ARGS:-} "$@"
}
echo "gpu_check.sh: installing into $venv ($(left) s left)"
if ! install "jax[$extra]==${JAX_VERSION:-0.10.2}" || ! install -e "$ROOT"; then
  echo "gpu_check.sh: pip install failed or ran out of time; no GPU figures." \
       "An offline host needs PIP_ARGS='--no-index --find-links DIR'." >&2
  exit 1
fi
"$venv/bin/python" -c 'import jax; print("gpu_check.sh: JAX sees",
  jax.devices())'

cd "$ROOT"
status=0
timeout "$(( $(left) - 5 ))" "$venv/bin/python" benchmarks/gpu_check.py \
  --budget_s "$(( $(left) - 15 ))" || status=$?
if [[ "$status" -eq 124 ]]; then
  echo "gpu_check.sh: out of time after ${BUDGET} s; benchmarks/results/" \
       "gpu_check.json holds the parts that finished." >&2
fi
exit "$status"
