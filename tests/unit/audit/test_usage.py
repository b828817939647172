"""appliance/audit/usage.py: the console's usage series, split by team, model and
adapter."""

from __future__ import annotations

from appliance.audit.usage import NO_ADAPTER, UsageRow, adapter_of, usage_series

DAYS = ["2026-12-01", "2026-12-02", "2026-12-03"]
LEGAL = {"adapter": "legal-v1", "adapter_base": "m", "adapter_manifest_sha256": "ab"}


def test_adapter_of_names_it_as_callers_do() -> None:
    assert adapter_of("m:legal-v1", LEGAL) == "m:legal-v1"
    assert adapter_of("alias", LEGAL) == "m:legal-v1"  # a record naming an alias
    assert adapter_of("m", {"tools": ["f"]}) is None
    assert adapter_of("m", None) is None
    assert adapter_of("m", {"adapter": 7}) is None


def test_usage_splits_by_adapter_and_every_split_sums_the_same() -> None:
    rows = [
        UsageRow("2026-12-01", False, "legal", "m:legal-v1", 10, "m:legal-v1"),
        UsageRow("2026-12-01", False, "legal", "m:legal-v1", 5, "m:legal-v1"),
        UsageRow("2026-12-01", False, "tax", "m:tax-v1", 7, "m:tax-v1"),
        UsageRow("2026-12-03", False, None, "m", 3),
        UsageRow("2026-12-02", True, "legal", "m:legal-v1"),
        UsageRow("2026-11-30", False, "legal", "m", 100),  # outside the days: left out
    ]
    usage = usage_series(rows, DAYS)
    assert usage["days"] == DAYS
    assert usage["requests_by_adapter"] == {
        NO_ADAPTER: [0, 0, 1], "m:legal-v1": [2, 0, 0], "m:tax-v1": [1, 0, 0],
    }  # fmt: skip
    assert usage["tokens_by_adapter"] == {
        NO_ADAPTER: [0, 0, 3], "m:legal-v1": [15, 0, 0], "m:tax-v1": [7, 0, 0],
    }  # fmt: skip
    assert usage["tokens_by_team"] == {
        "(no team)": [0, 0, 3], "legal": [15, 0, 0], "tax": [7, 0, 0],
    }  # fmt: skip
    assert usage["requests_by_model"]["m:legal-v1"] == [2, 0, 0]
    assert usage["denials"] == [0, 1, 0]
    for kind in ("requests", "tokens"):
        totals = {
            split: [sum(day) for day in zip(*usage[f"{kind}_by_{split}"].values(), strict=True)]
            for split in ("team", "model", "adapter")
        }
        assert totals["team"] == totals["model"] == totals["adapter"]


def test_no_rows_no_series() -> None:
    usage = usage_series([], DAYS)
    assert usage["requests_by_adapter"] == {} and usage["denials"] == [0, 0, 0]
