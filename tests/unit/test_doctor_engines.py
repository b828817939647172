"""``appliance doctor``: one line per local engine (chat and embedding), each with its
offline environment; the embedding engine's endpoint is named as such."""

from __future__ import annotations

from appliance.config import Settings
from appliance.doctor import diagnose, local_engine_findings


def resolve(host: str) -> list[str]:
    return ["127.0.0.1"] if host == "127.0.0.1" else []


def test_both_local_engines_are_listed() -> None:
    report = diagnose(Settings(), resolve=resolve)
    assert not report.failed
    kinds = {(e.kind, e.name) for e in report.endpoints}
    assert ("engine", "smollm2-135m-instruct") in kinds
    assert ("embedding engine", "smollm2-135m-embed") in kinds
    messages = [f.message for f in report.findings]
    assert any(
        m.startswith("engine smollm2-135m-instruct: local vLLM (generate runner)") for m in messages
    )
    embed = next(m for m in messages if m.startswith("embedding engine smollm2-135m-embed:"))
    assert "pooling runner, --convert embed, LAST pooling, normalised" in embed
    assert "http://127.0.0.1:8101" in embed
    assert any(m.startswith("embedding engine env: HF_HUB_OFFLINE=1") for m in messages)


def test_embedding_engine_off() -> None:
    findings = local_engine_findings(Settings(embedding_engine={"enabled": False}))
    assert not any("embedding" in f.message for f in findings)
    assert len(findings) == 2  # the chat engine and its environment


def test_no_local_engines() -> None:
    (finding,) = local_engine_findings(Settings(engine={"enabled": False}))
    assert finding.message == "local engines: none (gateway.upstreams only)"
