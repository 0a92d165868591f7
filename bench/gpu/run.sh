#!/usr/bin/env bash
# The GPU run in one command, on a bare GPU machine: environment, the wheels of .whl/ installed (see
# prepare_wheels.sh), then bench/gpu/benchmark.py (paper-scale training with DeepSpeed in bf16, the AR baseline,
# the decoding frontier). At most 9 minutes; figures in OUTPUT.
#   bash bench/gpu/run.sh --output OUTPUT [benchmark.py options, e.g. --train-minutes 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU', torch.cuda.is_available())"

# Install what the image lacks, without the network and without touching its own packages.
wheels=${TEXTDIFF_WHEELS:-.whl}
if ls "$wheels"/*.whl >/dev/null 2>&1; then
    site=${TEXTDIFF_SITE:-/tmp/textdiff-site}
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" - <<'PY'
import importlib
missing = []
for name in ("deepspeed", "datasets", "evaluate", "nltk", "transformers", "tokenizers", "sentencepiece", "safetensors", "yaml"):
    try:
        importlib.import_module(name)
    except Exception as error:  # report every missing package at once, then stop
        missing.append(f"{name} ({type(error).__name__}: {error})")
if missing:
    raise SystemExit("Missing on this machine: " + "; ".join(missing) + ". Run bench/gpu/prepare_wheels.sh on a "
                     "machine with PyPI and bring .whl/ along.")
PY
exec "$python" -m bench.gpu.benchmark "$@"
