"""sovereign: true refuses to render unless every image comes from the site's registry
pinned by digest, and no engine runs remote code from its weights directory unless the
admin allows it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.helm_render import base_values, helm_sdk, merge, plan_values, render

DIGEST = "sha256:" + "a" * 64


def _sovereign(profile: str = "dev-cpu", **override: Any) -> dict[str, Any]:
    """A sovereign install that passes: site registry, every image by digest."""
    values = merge(merge(plan_values(profile), base_values()), {
        "sovereign": True,
        "global": {"imageRegistry": "registry.site.internal"},
        "engine": {"image": {"digest": DIGEST}},
        "gateway": {"image": {"digest": DIGEST}},
    })  # fmt: skip
    return merge(values, override)


def _refused(values: dict[str, Any], pattern: str) -> None:
    helm = helm_sdk()
    with pytest.raises(helm.HelmError, match=pattern):
        render(values)


def test_sovereign_render_passes_with_registry_and_digests() -> None:
    out = render(_sovereign())
    images = [
        c["image"]
        for _, template in out.pod_templates()
        for c in template["spec"].get("containers", [])
    ]
    assert images
    for image in images:
        assert image.startswith("registry.site.internal/") and image.endswith("@" + DIGEST)


def test_sovereign_refuses_an_empty_registry() -> None:
    _refused(_sovereign(**{"global": {"imageRegistry": ""}}), r"global\.imageRegistry")


@pytest.mark.parametrize("component", ["engine", "gateway"])
def test_sovereign_refuses_a_tag_without_digest(component: str) -> None:
    _refused(_sovereign(**{component: {"image": {"digest": ""}}}), rf"{component}\.image\.digest")


def test_sovereign_checks_optional_images_only_when_enabled() -> None:
    render(_sovereign(otel={"enabled": False}))  # disabled: its tag does not matter
    _refused(_sovereign(otel={"enabled": True}), r"otel\.image\.digest")
    _refused(
        _sovereign(postgresql={"bundled": {"enabled": True}, "external": {"host": ""}}),
        r"postgresql\.bundled\.image\.digest",
    )
    render(
        _sovereign(
            otel={"enabled": True, "image": {"digest": DIGEST}},
            postgresql={
                "bundled": {"enabled": True, "image": {"digest": DIGEST}},
                "external": {"host": ""},
            },
        )
    )


@pytest.mark.parametrize(
    "where",
    [
        {"leader": {"args": ["--served-model-name", "m", "--trust-remote-code"]}},
        {"extraArgs": ["--trust_remote_code"]},
        {"extraArgs": ["--trust-remote-code=true"]},
    ],
    ids=["leader-args", "extra-args-underscore", "extra-args-equals"],
)
def test_sovereign_refuses_trust_remote_code_unless_allowed(where: dict[str, Any]) -> None:
    _refused(_sovereign(engine=where), r"engine\.allowTrustRemoteCode")
    render(_sovereign(engine={**where, "allowTrustRemoteCode": True}))


def test_sovereign_checks_the_workers_args_too() -> None:
    values = _sovereign("deepseek-v3-2x8-h100")
    render(values)  # the shipped DeepSeek-V3 plan runs without remote code
    worker = values["engine"]["worker"]
    worker["args"] = [*worker["args"], "--trust-remote-code"]
    _refused(values, r"--trust-remote-code")


def test_without_sovereign_nothing_is_refused() -> None:
    values = merge(merge(plan_values("dev-cpu"), base_values()), {
        "engine": {"extraArgs": ["--trust-remote-code"]},
    })  # fmt: skip
    render(values)
