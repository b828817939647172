"""Keycloak claims to a Principal."""

from __future__ import annotations

from appliance.identity.claims import ClaimMapping, principal_from_claims
from appliance.identity.principal import AuthMethod

KEYCLOAK_USER = {
    "sub": "f1d2", "preferred_username": "alice", "email": "alice@example.test",
    "azp": "appliance-web", "groups": ["/staff", "/teams/research/nlp"],
    "realm_access": {"roles": ["appliance-user", "offline_access", "default-roles-x"]},
    "resource_access": {"appliance-gateway": {"roles": ["appliance-auditor"]},
                        "account": {"roles": ["manage-account"]}},
}  # fmt: skip


def test_realm_and_configured_client_roles_count() -> None:
    principal = principal_from_claims(KEYCLOAK_USER, ClaimMapping())
    assert principal.auth_method is AuthMethod.OIDC
    assert principal.subject == "f1d2" and principal.username == "alice"
    assert principal.email == "alice@example.test" and principal.client_id == "appliance-web"
    assert principal.roles == {
        "appliance-user", "offline_access", "default-roles-x", "appliance-auditor",
    }  # fmt: skip
    assert "manage-account" not in principal.roles  # another client's role
    assert principal.client_roles == {"appliance-auditor"}
    assert principal.groups == {"/staff", "/teams/research/nlp"}
    assert principal.team == "research"


def test_realm_roles_only_and_team_from_claim() -> None:
    mapping = ClaimMapping(roles_client=None, team_claim="department")
    principal = principal_from_claims({**KEYCLOAK_USER, "department": "legal"}, mapping)
    assert "appliance-auditor" not in principal.roles
    assert principal.team == "legal"
    listed = principal_from_claims({**KEYCLOAK_USER, "department": ["ops", "x"]}, mapping)
    assert listed.team == "ops"


def test_service_account_and_missing_optional_claims() -> None:
    principal = principal_from_claims(
        {"sub": "s1", "client_id": "svc-batch", "realm_access": "junk", "groups": "junk"},
        ClaimMapping(team_group_prefix=None),
    )
    assert principal.username == "s1" and principal.client_id == "svc-batch"
    assert principal.roles == frozenset() and principal.groups == frozenset()
    assert principal.team is None and principal.email is None
