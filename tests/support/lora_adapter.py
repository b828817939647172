"""A small LoRA for the dev model, built with ``peft`` from local weights, and the
reference greedy generation (``transformers`` + ``peft``) the engine is compared with.

The adapter is deterministic (fixed seed) and its ``lora_B`` is non-zero, so it
changes the model's answer; it is saved as safetensors, as a team would train it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["E2E_ADAPTER", "E2E_ADAPTER_TEAMS", "build_lora", "greedy_token_ids", "stage_adapter"]

# The adapter the shared e2e appliance serves (tests/e2e/test_adapters_e2e.py).
E2E_ADAPTER = "legal-v1"
E2E_ADAPTER_TEAMS = ("legal", "compliance")


def build_lora(base_dir: Path, out_dir: Path, *, seed: int = 1234, rank: int = 8) -> Path:
    """Save a PEFT LoRA on ``q_proj``/``v_proj`` of ``base_dir`` with random (seeded)
    A and B matrices to ``out_dir`` (adapter_config.json + adapter_model.safetensors)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], lora_dropout=0.0
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            # peft starts B at zero (a no-op adapter). Scale 0.3 changes the dev model's
            # greedy answer to the e2e question; 0.05 and 0.2 left it unchanged.
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def greedy_token_ids(
    base_dir: Path,
    messages: Sequence[dict[str, Any]],
    *,
    max_tokens: int,
    adapter_dir: Path | None = None,
) -> list[int]:
    """Greedy completion token ids for a chat, with the model's own chat template
    (the one vLLM applies), with or without the adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    prompt = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    return [int(token) for token in output[0, inputs["input_ids"].shape[1] :]]


def stage_adapter(base_dir: Path, config: Path, data_dir: Path, workdir: Path) -> None:
    """Before ``appliance up``: put the base in the data dir's model store (a link to
    ``base_dir``), build :data:`E2E_ADAPTER` and import it with the real CLI."""
    store = data_dir / "models"
    store.mkdir(parents=True, exist_ok=True)
    (store / base_dir.name).symlink_to(base_dir.resolve(), target_is_directory=True)
    source = build_lora(base_dir, workdir / "lora-src")
    subprocess.run(
        [sys.executable, "-m", "appliance.cli", "adapters", "import", str(source), E2E_ADAPTER,
         "--base", base_dir.name, "--teams", ",".join(E2E_ADAPTER_TEAMS), "--trust-source",
         "--config", str(config)],
        check=True, cwd=workdir,
    )  # fmt: skip
