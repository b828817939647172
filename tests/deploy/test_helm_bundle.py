"""Charts use what was built (issue 14): `appliance plan -f helm-values --bundle B`
pins the chart's images to the bundle's digests, and the chart rendered with those
values (Helm's own engine) references only images the bundle carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from tests.deploy.helm_render import PROFILES, base_values, merge, render

GATEWAY_DIGEST = "sha256:" + "a" * 64
ENGINE_DIGEST = "sha256:" + "b" * 64


def bundle_with_images(tmp_path: Path, *, engine: bool = True) -> Path:
    images = [{"name": "appliance-gateway", "repository": "appliance/gateway", "tag": "0.1.0",
               "digest": GATEWAY_DIGEST, "archive": "appliance-gateway-0.1.0.oci.tar"}]  # fmt: skip
    if engine:
        images.append({"name": "appliance-engine-cpu", "repository": "appliance/engine-cpu",
                       "tag": "0.1.0", "digest": ENGINE_DIGEST,
                       "archive": "appliance-engine-cpu-0.1.0.oci.tar"})  # fmt: skip
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"version": "0.1.0", "images": images}))
    return bundle


def planned(profile: str, *extra: str) -> Any:
    result = CliRunner().invoke(app, ["plan", *PROFILES[profile], "-f", "helm-values", *extra])
    return result


def engine_scripts(values: dict[str, Any]) -> list[str]:
    """The shell line each rendered engine container runs."""
    rendered = render(merge(base_values(), values))
    return [
        container["args"][0]
        for _owner, template in rendered.pod_templates()
        for container in template["spec"]["containers"]
        if container["name"] == "vllm"
    ]


def image_references(values: dict[str, Any]) -> set[str]:
    rendered = render(merge(base_values(), values))
    found = set()
    for _owner, template in rendered.pod_templates():
        spec = template["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            found.add(container["image"])
    return found


@pytest.mark.parametrize("registry", ["", "registry.site.internal:5000"])
def test_a_cpu_plan_renders_only_the_bundles_images_by_digest(
    tmp_path: Path, registry: str
) -> None:
    bundle = bundle_with_images(tmp_path)
    extra = ["--bundle", str(bundle)] + (["--image-registry", registry] if registry else [])
    result = planned("dev-cpu", *extra)
    assert result.exit_code == 0, result.output
    values = yaml.safe_load(result.stdout)
    prefix = f"{registry}/" if registry else ""
    expected = {
        f"{prefix}appliance/gateway@{GATEWAY_DIGEST}",
        f"{prefix}appliance/engine-cpu@{ENGINE_DIGEST}",
    }
    assert image_references(values) == expected
    # The appliance's CPU engine image runs vLLM's serve CLI through its launcher.
    scripts = engine_scripts(values)
    assert scripts and all("python3 -m appliance.engine.vllm_cli serve" in s for s in scripts)


def test_a_gpu_plan_pins_the_gateway_and_keeps_the_upstream_engine(tmp_path: Path) -> None:
    bundle = bundle_with_images(tmp_path, engine=False)
    result = planned("deepseek-v3-1x8-h200", "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    references = image_references(yaml.safe_load(result.stdout))
    assert f"appliance/gateway@{GATEWAY_DIGEST}" in references
    upstream = {ref for ref in references if "vllm/vllm-openai" in ref}
    assert upstream and all(":v0.32.0" in ref or "@sha256:" in ref for ref in upstream)
    scripts = engine_scripts(yaml.safe_load(result.stdout))
    assert scripts and all("python3 -m vllm.entrypoints.cli.main serve" in s for s in scripts)


def test_a_bundle_without_images_is_refused_by_name(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps({"version": "0.1.0", "images": []}))
    result = planned("dev-cpu", "--bundle", str(bundle))
    assert result.exit_code != 0
    assert "carries no gateway image" in str(result.exception or result.output)
    missing = planned("dev-cpu", "--bundle", str(tmp_path / "nowhere"))
    assert missing.exit_code != 0
