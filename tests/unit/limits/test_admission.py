"""appliance/limits/admission.py: the all-or-nothing decision both stores apply."""

from __future__ import annotations

import pytest

from appliance.limits.admission import BucketCharge, Refusal, SlotClaim, admit, settle_all
from appliance.limits.quota import Bucket, BucketRule

RPM = BucketCharge("k:rpm", BucketRule(60), 1.0)
TPM = BucketCharge("k:tpm", BucketRule(600), 500.0)
SLOT = SlotClaim("k:inflight", 2)


def test_grants_every_charge_or_names_the_first_refusal() -> None:
    granted = admit([RPM, TPM], [None, None], [SLOT], [1], now_s=0.0)
    assert granted == [Bucket(59.0, 0.0), Bucket(100.0, 0.0)]
    # The token bucket holds 100 of the 500 wanted: refused, 40 s at 10 tokens/s.
    refused = admit([RPM, TPM], granted, [SLOT], [0], now_s=0.0)
    assert refused == Refusal(1, pytest.approx(40.0))


def test_a_full_slot_is_refused_after_the_charges() -> None:
    assert admit([RPM], [None], [SlotClaim("a", 5), SLOT], [0, 2], now_s=0.0) == Refusal(2, 1.0)


def test_settlement_refunds_and_charges_each_bucket_in_order() -> None:
    rule = BucketRule(600)
    after = settle_all(
        [BucketCharge("a", rule, 100.0), BucketCharge("b", rule, -50.0),
         BucketCharge("b", rule, -25.0)],
        {"a": Bucket(0.0, 0.0)},
        now_s=1.0,
    )  # fmt: skip
    assert after == {"a": Bucket(110.0, 1.0), "b": Bucket(525.0, 1.0)}
