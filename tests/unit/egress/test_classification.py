"""appliance/egress/levels.py: the order and the names of the levels."""

from __future__ import annotations

import pytest

from appliance.egress.levels import Classification


def test_levels_are_ordered() -> None:
    assert (
        Classification.PUBLIC
        < Classification.INTERNAL
        < Classification.CONFIDENTIAL
        < Classification.RESTRICTED
    )
    assert max(Classification.INTERNAL, Classification.RESTRICTED) is Classification.RESTRICTED


@pytest.mark.parametrize("name", ["confidential", "CONFIDENTIAL", " Confidential "])
def test_parse(name: str) -> None:
    assert Classification.parse(name) is Classification.CONFIDENTIAL
    assert Classification.parse(Classification.PUBLIC) is Classification.PUBLIC
    assert Classification.RESTRICTED.label == "restricted"


def test_parse_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="public, internal, confidential, restricted"):
        Classification.parse("secret")
