"""`appliance plan -f helm-values` with LoRA slots, stored adapters and an embedding
engine, rendered by the real chart (issue #16): the engine gets one set of LoRA flags
with the planned sizes and the stored adapters pinned, and the embedding engine runs
with the planned flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from appliance.adapters import import_adapter, list_adapters
from appliance.cli.main import app
from tests.deploy.helm_render import PROFILES, Rendered, base_values, merge, render
from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base

EMBEDDING = "appliance-embedding-engine"


def _planned(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["plan", *args, "-f", "helm-values"])
    assert result.exit_code == 0, result.output
    values: dict[str, Any] = yaml.safe_load(result.stdout)
    return merge(values, base_values())


def _script(out: Rendered) -> str:
    deployment = out.one("Deployment", "appliance-engine")
    script: str = deployment["spec"]["template"]["spec"]["containers"][0]["args"][0]
    return script


def _embedding_container(out: Rendered) -> dict[str, Any]:
    (deployment,) = [o for o in out.of_kind("Deployment") if o["metadata"]["name"] == EMBEDDING]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["replicas"] = deployment["spec"]["replicas"]
    return dict(container)


def test_planned_adapters_and_embedding_engine_render(tmp_path: Path) -> None:
    store = tmp_path / "models"
    write_base(store)
    import_adapter(write_adapter(tmp_path / "src", rank=8), store, "legal-v1",
                   base=DEV_BASE, teams=["legal"], trust_source=True)  # fmt: skip
    (stored,) = list_adapters(store)
    out = render(_planned(*PROFILES["dev-cpu"], "--max-loras", "3", "--model-store", str(store),
                          "--embedding-model", "smollm2-135m-instruct"))  # fmt: skip
    script = _script(out)
    # One set of LoRA flags, the planned ones (without --max-lora-rank: the largest
    # stored adapter's rank).
    assert script.count("'--enable-lora'") == 1 and script.count("'--max-loras'") == 1
    assert "'--enable-lora' '--max-loras' '3' '--max-lora-rank' '8'" in script
    assert '"name":"smollm2-135m-instruct:legal-v1"' in script
    (init,) = out.one("Deployment", "appliance-engine")["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert f"--expect-sha256 '{stored.manifest_sha256}'" in init["args"][0]
    vllm = _embedding_container(out)
    args = vllm["args"]
    for flag, value in (("--served-model-name", "smollm2-135m-embed"), ("--runner", "pooling"),
                        ("--convert", "embed"), ("--max-model-len", "512"),
                        ("--dtype", "float32"), ("--max-num-batched-tokens", "8192")):  # fmt: skip
        assert args[args.index(flag) + 1] == value
    assert yaml.safe_load(args[args.index("--pooler-config") + 1]) == {
        "pooling_type": "LAST", "use_activation": True,
    }  # fmt: skip
    env = {e["name"]: e.get("value") for e in vllm["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_gpu_plan_with_an_embedding_engine_of_its_own() -> None:
    values = _planned(*PROFILES["r1-distill-qwen-7b-1gpu"], "--max-loras", "2",
                      "--embedding-model", "smollm2-135m-instruct",
                      "--embedding-placement", "separate", "--embedding-gpus", "2")  # fmt: skip
    planned = values["embeddingEngine"]
    out = render(values)
    script = _script(out)
    assert "'--enable-lora' '--max-loras' '2' '--max-lora-rank' '16'" in script
    assert "--lora-modules" not in script  # slots for runtime loads only
    vllm = _embedding_container(out)
    args = vllm["args"]
    assert args[args.index("--gpu-memory-utilization") + 1] == str(planned["gpuMemoryUtilization"])
    assert args[args.index("--data-parallel-size") + 1] == "2"
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == 2
