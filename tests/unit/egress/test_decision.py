"""The egress decision: access, declared labels, the strictest source, the ceiling, and
what a refusal does (block or route), each verdict naming its rule and never a value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from appliance.config import Settings
from appliance.egress import Classification, Finding, Scanner, pseudonymise_messages
from appliance.egress.decision import (
    LABEL_FIELD,
    LABEL_HEADER,
    Caller,
    EgressDecision,
    Verdict,
    decide,
    declared_labels,
    without_label,
)
from appliance.egress.pseudonymise import message_texts
from appliance.errors import PermissionDenied
from appliance.settings.egress import ProviderSettings
from appliance.settings.egress_policy import ClassificationSettings

IBAN = "DE89370400440532013000"
EMAIL = "jane.doe@example.org"
AWS = "AKIAIOSFODNN7EXAMPLE"
RESEARCHER = Caller(frozenset({"research"}), frozenset({"appliance-user"}), "research")
DEFAULTS = ClassificationSettings()  # every team internal


def _provider(**change: Any) -> ProviderSettings:
    raw: dict[str, Any] = {
        "name": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential": {"secret_file": "/etc/appliance/secrets/openai.key"},
        "max_classification": "internal",
        "teams": ["research", "marketing"],
        "models": ["gpt-4.1@openai"],
        "price_input_per_million": 2,
        "price_output_per_million": 8,
        "monthly_budget": {"*": 100},
        "egress": {"cidrs": ["162.159.140.0/24"]},
    }
    raw.update(change)
    return ProviderSettings.model_validate(raw)


def _findings(scanner: Scanner, *texts: str) -> list[Finding]:
    return [f for text in texts for f in scanner.scan(text).findings]


def _decide(
    scanner: Scanner,
    text: str = "Summarise the meeting notes.",
    *,
    provider: ProviderSettings | None = None,
    caller: Caller = RESEARCHER,
    declared: tuple[object, ...] = (),
    defaults: ClassificationSettings = DEFAULTS,
) -> EgressDecision:
    return decide(provider or _provider(), caller, declared, defaults, _findings(scanner, text))


def test_clean_prompt_within_the_ceiling_is_allowed(scanner: Scanner) -> None:
    decision = _decide(scanner)
    assert decision.verdict is Verdict.ALLOW and decision.leaves
    assert decision.rule == "within_ceiling"
    assert decision.classification is Classification.INTERNAL
    assert decision.decided_by == ("team_default",)
    assert decision.sent_classification is Classification.INTERNAL
    assert decision.team == "research"


def test_strictest_of_the_three_sources_wins(scanner: Scanner) -> None:
    restricted = _provider(max_classification="restricted")
    defaults = ClassificationSettings(teams={"research": "confidential"})
    decision = _decide(
        scanner, f"mail {EMAIL}", provider=restricted, declared=("public",), defaults=defaults
    )
    assert dict(decision.sources) == {
        "declared": Classification.PUBLIC,
        "team_default": Classification.CONFIDENTIAL,
        "content": Classification.INTERNAL,
    }
    assert decision.classification is Classification.CONFIDENTIAL
    assert decision.decided_by == ("team_default",)
    assert decision.verdict is Verdict.ALLOW
    # Declared label above both: it decides.
    decision = _decide(scanner, provider=restricted, declared=("Restricted",))
    assert decision.classification is Classification.RESTRICTED
    assert decision.decided_by == ("declared",)


def test_team_default_is_the_strictest_of_the_callers_teams() -> None:
    defaults = ClassificationSettings(default="public", teams={"legal": "confidential"})
    assert defaults.team_default(frozenset({"marketing"})) is Classification.PUBLIC
    assert defaults.team_default(frozenset({"marketing", "legal"})) is (Classification.CONFIDENTIAL)
    assert defaults.team_default(frozenset()) is Classification.PUBLIC
    assert ClassificationSettings().team_default(frozenset()) is Classification.INTERNAL


@pytest.mark.parametrize(
    ("caller", "rule"),
    [
        (Caller(frozenset({"legal"}), frozenset({"appliance-user"}), "legal"), "provider.teams"),
        (Caller(frozenset(), frozenset({"appliance-user"})), "provider.teams"),
        (Caller(frozenset({"research"}), frozenset({"appliance-admin"})), "provider.roles"),
    ],
)
def test_callers_the_provider_does_not_serve_are_blocked(
    scanner: Scanner, caller: Caller, rule: str
) -> None:
    provider = _provider(roles=["appliance-user"])
    decision = _decide(scanner, provider=provider, caller=caller)
    assert decision.verdict is Verdict.BLOCK and decision.rule == rule
    assert not decision.leaves


def test_access_refusals_block_even_with_a_fallback(scanner: Scanner) -> None:
    provider = _provider(policy={"fallback_model": "llama-3.1-8b"})
    caller = Caller(frozenset({"legal"}), frozenset())
    assert _decide(scanner, provider=provider, caller=caller).verdict is Verdict.BLOCK


def test_acting_team_prefers_the_callers_own(scanner: Scanner) -> None:
    both = frozenset({"research", "marketing"})
    assert _decide(scanner, caller=Caller(both, frozenset(), "research")).team == "research"
    assert _decide(scanner, caller=Caller(both, frozenset(), "legal")).team == "marketing"


@pytest.mark.parametrize("label", ["secret", "", " ", 3, None, ["public"]])
def test_an_unreadable_label_blocks(scanner: Scanner, label: object) -> None:
    provider = _provider(policy={"fallback_model": "llama-3.1-8b"})
    decision = _decide(scanner, provider=provider, declared=("public", label))
    assert decision.verdict is Verdict.BLOCK
    assert decision.rule == "label.invalid"
    assert "expected one of public, internal, confidential, restricted" in decision.message


def test_labels_from_header_and_body() -> None:
    headers = {"content-type": "application/json", "x-data-classification": "confidential"}
    body = {"model": "gpt-4.1@openai", LABEL_FIELD: "internal", "messages": []}
    assert declared_labels(headers, body) == ("confidential", "internal")
    assert declared_labels({LABEL_HEADER: "public"}, {}) == ("public",)
    assert declared_labels({}, {"model": "m"}) == ()
    assert without_label(body) == {"model": "gpt-4.1@openai", "messages": []}
    assert LABEL_FIELD in body  # not mutated


def test_declared_label_above_the_ceiling_is_refused(scanner: Scanner) -> None:
    decision = _decide(scanner, declared=("confidential",))
    assert decision.verdict is Verdict.BLOCK and decision.rule == "ceiling.declared"
    assert decision.sent_classification is None
    routed = _decide(
        scanner,
        provider=_provider(policy={"fallback_model": "llama-3.1-8b"}),
        declared=("confidential",),
    )
    assert routed.verdict is Verdict.ROUTE and routed.rule == "ceiling.declared"
    assert routed.fallback_model == "llama-3.1-8b" and not routed.leaves


def test_team_default_above_the_ceiling_is_refused_even_when_content_is_clean(
    scanner: Scanner,
) -> None:
    defaults = ClassificationSettings(teams={"research": "restricted"})
    decision = _decide(scanner, defaults=defaults)
    assert decision.verdict is Verdict.BLOCK and decision.rule == "ceiling.team_default"


def test_pseudonymisable_content_above_the_ceiling_is_pseudonymised(scanner: Scanner) -> None:
    text = f"Pay {IBAN} and tell {EMAIL}"
    decision = _decide(scanner, text)
    assert decision.verdict is Verdict.PSEUDONYMISE and decision.leaves
    assert decision.rule == "pseudonymise.content"
    assert decision.classification is Classification.CONFIDENTIAL
    assert decision.decided_by == ("content",)
    assert decision.threshold is Classification.CONFIDENTIAL  # above internal
    assert decision.sent_classification is Classification.INTERNAL
    assert dict(decision.detectors) == {"email": 1, "iban": 1}
    # The threshold hands over to the pseudonymiser: the IBAN goes, the e-mail may stay.
    messages = [{"role": "user", "content": text}]
    result = pseudonymise_messages(messages, scanner, threshold=decision.threshold)
    assert IBAN not in json.dumps(result.value) and EMAIL in json.dumps(result.value)


def test_a_non_pseudonymisable_detector_above_the_ceiling_is_refused(scanner: Scanner) -> None:
    text = f"key {AWS} and {IBAN}"
    decision = _decide(scanner, text)
    assert decision.verdict is Verdict.BLOCK and decision.rule == "ceiling.content"
    assert decision.refused_detectors == ("aws_access_key_id",)
    assert "aws_access_key_id" in decision.message and AWS not in decision.message
    routed = _decide(scanner, text, provider=_provider(policy={"fallback_model": "qwen3-8b"}))
    assert routed.verdict is Verdict.ROUTE and routed.fallback_model == "qwen3-8b"
    assert "routed to in-house qwen3-8b" in routed.message


def test_a_secret_within_the_ceiling_is_allowed(scanner: Scanner) -> None:
    decision = _decide(scanner, f"key {AWS}", provider=_provider(max_classification="restricted"))
    assert decision.verdict is Verdict.ALLOW


def test_absorbed_detectors_must_be_pseudonymisable_too() -> None:
    merged = Finding("email", "EMAIL", 0, 20, Classification.RESTRICTED, "x" * 20, ("jwt",))
    provider = _provider()
    decision = decide(provider, RESEARCHER, (), DEFAULTS, [merged])
    assert decision.verdict is Verdict.BLOCK and decision.refused_detectors == ("jwt",)
    lenient = _provider(policy={"pseudonymise": ["email", "jwt"]})
    assert decide(lenient, RESEARCHER, (), DEFAULTS, [merged]).verdict is Verdict.PSEUDONYMISE


def test_site_dictionaries_block_unless_listed() -> None:
    term = Finding("dictionary.codenames", "TERM", 0, 6, Classification.CONFIDENTIAL, "Falcon")
    assert decide(_provider(), RESEARCHER, (), DEFAULTS, [term]).rule == "ceiling.content"
    lenient = _provider(policy={"pseudonymise": ["dictionary.*"]})
    assert decide(lenient, RESEARCHER, (), DEFAULTS, [term]).verdict is Verdict.PSEUDONYMISE


def test_public_ceiling_with_internal_content_pseudonymises(scanner: Scanner) -> None:
    provider = _provider(max_classification="public")
    defaults = ClassificationSettings(default="public")
    decision = _decide(scanner, f"ask {EMAIL}", provider=provider, defaults=defaults)
    assert decision.verdict is Verdict.PSEUDONYMISE
    assert decision.threshold is Classification.INTERNAL
    assert decision.sent_classification is Classification.PUBLIC


def test_findings_across_messages_count(scanner: Scanner) -> None:
    messages = [
        {"role": "system", "content": f"Card owner {EMAIL}"},
        {"role": "user", "content": [{"type": "text", "text": f"IBAN {IBAN}"}]},
    ]
    findings = _findings(scanner, *message_texts(messages))
    decision = decide(_provider(), RESEARCHER, (), DEFAULTS, findings)
    assert decision.verdict is Verdict.PSEUDONYMISE
    assert dict(decision.detectors) == {"email": 1, "iban": 1}


def test_audit_metadata_holds_names_levels_and_counts_only(scanner: Scanner) -> None:
    text = f"key {AWS} and {IBAN} for {EMAIL}"
    decision = _decide(scanner, text, declared=("internal",))
    record = decision.to_audit()
    assert record == {
        "provider": "openai",
        "team": "research",
        "verdict": "block",
        "rule": "ceiling.content",
        "classification": "restricted",
        "classification_sources": {
            "declared": "internal",
            "team_default": "internal",
            "content": "restricted",
        },
        "decided_by": ["content"],
        "detectors": {"aws_access_key_id": 1, "email": 1, "iban": 1},
        "refused_detectors": ["aws_access_key_id"],
        "sent_classification": None,
        "fallback_model": None,
    }
    serialised = json.dumps(record) + repr(decision)
    for value in (AWS, IBAN, EMAIL):
        assert value not in serialised


def test_block_becomes_a_403_naming_the_rule(scanner: Scanner) -> None:
    error = _decide(scanner, f"key {AWS}").as_error()
    assert isinstance(error, PermissionDenied) and error.status_code == 403
    assert error.code == "egress_blocked"
    assert "rule ceiling.content" in error.message and AWS not in error.message


def test_policy_settings_defaults_and_validation() -> None:
    provider = _provider()
    assert provider.policy.fallback_model is None
    assert provider.policy.pseudonymisable("iban")
    assert not provider.policy.pseudonymisable("pem_private_key")
    assert not provider.policy.pseudonymisable("dictionary.customers")
    assert not provider.policy.pseudonymisable("some_new_detector")
    with pytest.raises(ValueError, match="matches no detector"):
        _provider(policy={"pseudonymise": ["ibann"]})
    with pytest.raises(ValueError, match="looks external"):
        _provider(policy={"fallback_model": "gpt-4.1@openai"})
    with pytest.raises(ValueError, match="extra"):
        _provider(policy={"block": ["jwt"]})
    with pytest.raises(ValueError):
        ClassificationSettings.model_validate({"teams": {"legal": "secret"}})


def test_classification_key_in_the_settings() -> None:
    assert Settings().classification.default == "internal"
    settings = Settings.model_validate({"classification": {"teams": {"legal": "confidential"}}})
    assert settings.classification.team_default(frozenset({"legal"})) is (
        Classification.CONFIDENTIAL
    )
