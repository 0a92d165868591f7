#!/usr/bin/env bash
# Prepare .whl/: the wheels of the Python packages textdiff needs that the GPU machine's image lacks, for its
# Python 3.12 on x86-64 Linux. Run it on the CPU machine (which reaches PyPI) before a GPU run; bench/gpu/run.sh
# installs them there with no network.
#   - DeepSpeed is published as a source distribution only: its wheel is built here (`pip wheel --no-deps`, no ops
#     compiled; the training path needs none: torch's fused AdamW, NCCL).
#   - datasets, evaluate, nltk and what they and DeepSpeed need beyond the image (torch 2.11, transformers 5.17,
#     tokenizers, sentencepiece, safetensors, pyarrow, pandas, numpy, tqdm, ...).
# Usage: bash bench/gpu/prepare_wheels.sh [DIR]   (default .whl, which git ignores)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.whl}
rm -rf "$dir" && mkdir -p "$dir"

# One version of each, pinned to what this project is tested with (pip show on the CPU machine).
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
pip wheel --no-deps --quiet -w "$dir" "deepspeed==$(version deepspeed)"
pure=(datasets evaluate nltk dill multiprocess hjson pydantic annotated-types typing-inspection typing-extensions
      defusedxml)
specs=()
for name in "${pure[@]}"; do specs+=("$name==$(version "$name")"); done
specs+=("pydantic-core==$(version pydantic-core)")  # compiled: the cp312 manylinux wheel
python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" "${specs[@]}"
ls -1 "$dir"
du -sh "$dir"
