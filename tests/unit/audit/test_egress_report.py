"""The egress summary (appliance.audit.egress_report): each kind of external call is
counted once, under its team and provider; ordinary records are not external calls."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audit.egress_report import NO_TEAM, is_external, line_key, summarise
from tests.support.audit import T0
from tests.support.egress_calls import KINDS, external_call, inhouse_call

# Summary field each kind of call is counted in.
FIELD = {
    "allow": "left",
    "pseudonymise": "left",
    "route": "routed",
    "block": "blocked",
    "budget": "budget_refused",
}


def test_each_kind_counts_once_with_tokens_cost_and_detectors_of_what_left() -> None:
    records = [
        *external_call("allow", "r1", detectors={"email": 2}, tokens=(10, 4), cost="0.10"),
        *external_call("pseudonymise", "r2", detectors={"email": 1, "iban": 3}, cost="0.20"),
        *external_call("route", "r3", detectors={"patient_id": 1}, tokens=(100, 100)),
        *external_call("block", "r4", detectors={"patient_id": 2}),
        *external_call("budget", "r5"),
        *inhouse_call("r6"),
    ]
    summary = summarise(records)
    assert summary.records == 8  # 2 + 2 + 2 + 1 + 1; the in-house call's two are not
    (line,) = summary.lines
    assert (line.team, line.provider) == ("radiology", "openai")
    counted = line.as_dict()
    assert {k: counted[k] for k in FIELD.values()} | {"pseudonymised": line.pseudonymised} == {
        "left": 2, "routed": 1, "blocked": 1, "budget_refused": 1, "pseudonymised": 1,
    }  # fmt: skip
    # Tokens of the calls that left only (the routed call stayed in-house).
    assert (line.prompt_tokens, line.completion_tokens) == (10 + 11, 4 + 7)
    # Decimal sums: 0.10 + 0.20 is exactly 0.30, never 0.30000000000000004.
    assert counted["cost"] == {"EUR": "0.30"}
    # Each call's detectors once, though a completion repeats its decision.
    assert counted["detectors"] == {"email": 3, "iban": 3, "patient_id": 3}
    assert summary.totals.as_dict() | {"team": "x", "provider": "x"} == counted | {
        "team": "x", "provider": "x",
    }  # fmt: skip


def test_lines_per_team_and_provider_and_currencies_kept_apart() -> None:
    records = [
        *external_call("allow", "a", team="radiology", provider="openai", cost="1.5"),
        *external_call("allow", "b", team="radiology", provider="mistral", cost="2",
                       currency="USD"),
        *external_call("allow", "c", team="finance", provider="openai", cost="0.25"),
        *external_call("block", "d", team="finance", provider="openai"),
    ]  # fmt: skip
    summary = summarise(records)
    keys = [(line.team, line.provider) for line in summary.lines]
    assert keys == sorted({line_key(r) for r in records})
    assert len(keys) == 3
    by_key = {(line.team, line.provider): line for line in summary.lines}
    assert by_key[("finance", "openai")].blocked == 1
    assert by_key[("finance", "openai")].left == 1
    assert summary.totals.cost == {"EUR": Decimal("1.75"), "USD": Decimal("2")}


def test_team_falls_back_to_the_decision_and_a_bad_cost_is_unpriced() -> None:
    request, completion = external_call("allow", "r1", team="oncology", cost="n/a")
    records = [replace(request, team=None), replace(completion, team=None)]
    assert [line_key(r)[0] for r in records] == ["oncology", "oncology"]
    summary = summarise(records)
    assert summary.totals.unpriced == 1 and summary.totals.cost == {}
    no_team = replace(request, team=None, params={"egress": {"verdict": "allow"}})
    assert line_key(no_team)[0] == NO_TEAM


def test_in_house_records_are_not_external() -> None:
    assert not any(is_external(r) for r in inhouse_call("r1"))
    assert all(is_external(r) for kind in KINDS for r in external_call(kind, kind))
    assert summarise(inhouse_call("r1")).lines == ()


calls = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b"]), st.sampled_from(["p", "q"])),
    max_size=30,
)


@settings(max_examples=50, deadline=None)
@given(calls)
def test_counts_equal_the_calls_made(made: list[tuple[str, str, str]]) -> None:
    records = []
    for number, (kind, team, provider) in enumerate(made):
        at = T0 + timedelta(seconds=number * 2)
        records += external_call(kind, f"r{number}", team=team, provider=provider, at=at)
    summary = summarise(records)
    expected = Counter((FIELD[kind], team, provider) for kind, team, provider in made)
    found = Counter(
        {
            (name, line.team, line.provider): getattr(line, name)
            for line in summary.lines
            for name in set(FIELD.values())
        }
    )
    assert +found == +expected
    left = sum(1 for kind, _, _ in made if kind in ("allow", "pseudonymise"))
    assert summary.totals.prompt_tokens == 11 * left
    assert summary.totals.cost.get("EUR", Decimal(0)) == Decimal("0.0123") * left
