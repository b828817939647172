"""The realm as data, and the idempotent bootstrap through a fake Admin REST API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from keycloak import KeycloakAdmin

from appliance.identity.bootstrap import RealmAdmin, bootstrap_realm
from appliance.identity.realm import APPLIANCE_ROLES, RealmSpec, realm_representation

SPEC = RealmSpec(public_url="https://llm.example.internal/")


class FakeKeycloak:
    """The Admin REST API calls bootstrap uses, over in-memory state."""

    def __init__(self) -> None:
        self.realms: dict[str, dict[str, Any]] = {"master": self._empty()}
        self.current = "master"
        self.calls: list[str] = []

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {"roles": {}, "scopes": {}, "clients": {}, "client_scopes": {}}

    @property
    def r(self) -> dict[str, Any]:
        return self.realms[self.current]

    def _note(self, name: str) -> None:
        self.calls.append(name)

    def get_realms(self) -> list[Any]:
        return [{"realm": name} for name in self.realms]

    def create_realm(self, payload: dict[str, Any], skip_exists: bool = False) -> Any:
        self._note("create_realm")
        self.realms.setdefault(payload["realm"], self._empty())

    def change_current_realm(self, realm_name: str) -> None:
        self.current = realm_name

    def get_realm_roles(self) -> list[Any]:
        return [{"name": n} for n in self.r["roles"]]

    def create_realm_role(self, payload: dict[str, Any], skip_exists: bool = False) -> Any:
        self._note("create_realm_role")
        self.r["roles"][payload["name"]] = payload

    def get_client_scopes(self) -> list[Any]:
        return [{"id": i, "name": s["name"]} for i, s in self.r["scopes"].items()]

    def create_client_scope(self, payload: dict[str, Any], skip_exists: bool = False) -> Any:
        self._note("create_client_scope")
        self.r["scopes"][str(uuid.uuid4())] = {**payload, "mappers": {}}

    def get_mappers_from_client_scope(self, client_scope_id: str) -> list[Any]:
        return [dict(m) for m in self.r["scopes"][client_scope_id]["mappers"].values()]

    def add_mapper_to_client_scope(self, client_scope_id: str, payload: dict[str, Any]) -> Any:
        self._note("add_mapper")
        mapper_id = str(uuid.uuid4())
        self.r["scopes"][client_scope_id]["mappers"][mapper_id] = {**payload, "id": mapper_id}

    def update_mapper_in_client_scope(
        self, scope_id: str, mapper_id: str, payload: dict[str, Any]
    ) -> Any:
        self._note("update_mapper")
        self.r["scopes"][scope_id]["mappers"][mapper_id] = payload

    def get_client_id(self, client_id: str) -> str | None:
        for internal, client in self.r["clients"].items():
            if client["clientId"] == client_id:
                return str(internal)
        return None

    def get_client(self, client_id: str) -> dict[str, Any]:
        return {**self.r["clients"][client_id], "id": client_id, "bearerOnly": False}

    def create_client(self, payload: dict[str, Any], skip_exists: bool = False) -> Any:
        self._note("create_client")
        self.r["clients"][str(uuid.uuid4())] = {
            **payload,
            "secret": payload.get("secret", "generated"),
        }

    def update_client(self, client_id: str, payload: dict[str, Any]) -> Any:
        self._note("update_client")
        self.r["clients"][client_id].update(payload)

    def get_client_default_client_scopes(self, client_id: str) -> list[Any]:
        return [{"id": s} for s in self.r["client_scopes"].get(client_id, [])]

    def add_client_default_client_scope(
        self, client_id: str, scope_id: str, payload: dict[str, Any]
    ) -> Any:
        self._note("add_default_scope")
        self.r["client_scopes"].setdefault(client_id, []).append(scope_id)

    def get_client_secrets(self, client_id: str) -> dict[str, Any]:
        return {"type": "secret", "value": self.r["clients"][client_id].get("secret")}


def test_first_run_creates_everything_second_run_nothing() -> None:
    fake = FakeKeycloak()
    report = bootstrap_realm(fake, SPEC)
    assert "realm appliance" in report.created
    assert {f"role {r}" for r in APPLIANCE_ROLES} <= set(report.created)
    assert {"client appliance-gateway", "client appliance-web"} <= set(report.created)
    assert "mapper appliance-gateway-audience" in report.created
    assert report.gateway_secret == "generated"
    web = fake.realms["appliance"]["clients"][fake.get_client_id("appliance-web")]
    assert web["publicClient"] is True and web["attributes"]["pkce.code.challenge.method"] == "S256"
    assert web["redirectUris"] == ["https://llm.example.internal/auth/callback"]

    fake.calls.clear()
    again = bootstrap_realm(fake, SPEC)
    assert again.created == [] and again.updated == []
    assert fake.calls == []


def test_drift_is_repaired_and_secret_can_be_set() -> None:
    fake = FakeKeycloak()
    bootstrap_realm(fake, SPEC)
    fake.current = "appliance"
    scope_id = next(iter(fake.r["scopes"]))
    for mapper in fake.r["scopes"][scope_id]["mappers"].values():
        if mapper["name"] == "appliance-gateway-audience":
            mapper["config"] = {**mapper["config"], "access.token.claim": "false"}
    web = fake.get_client_id("appliance-web")
    assert web is not None
    fake.r["clients"][web]["redirectUris"] = ["https://old.example/*"]
    report = bootstrap_realm(fake, SPEC, gateway_secret="s3cret")
    assert set(report.updated) == {
        "mapper appliance-gateway-audience", "client appliance-web", "client appliance-gateway",
    }  # fmt: skip
    assert report.gateway_secret == "s3cret"


def test_python_keycloak_admin_has_every_method_bootstrap_uses() -> None:
    wanted = [name for name in dir(RealmAdmin) if not name.startswith("_")]
    assert wanted and all(callable(getattr(KeycloakAdmin, name, None)) for name in wanted)


def test_export_is_importable_shape_without_replacing_default_scopes() -> None:
    realm = realm_representation(SPEC)
    assert realm["realm"] == "appliance" and "clientScopes" not in realm
    assert [r["name"] for r in realm["roles"]["realm"]] == list(APPLIANCE_ROLES)
    gateway, web = realm["clients"]
    assert gateway["secret"] == "${APPLIANCE_OIDC_GATEWAY_CLIENT_SECRET}"
    assert gateway["publicClient"] is False and gateway["standardFlowEnabled"] is False
    mappers = {m["protocolMapper"]: m["config"] for m in web["protocolMappers"]}
    assert mappers["oidc-audience-mapper"]["included.client.audience"] == "appliance-gateway"
    assert mappers["oidc-audience-mapper"]["access.token.claim"] == "true"
    assert mappers["oidc-group-membership-mapper"]["claim.name"] == "groups"
    assert (
        web["attributes"]["post.logout.redirect.uris"]
        == "https://llm.example.internal/auth/logged-out"
    )


@pytest.mark.parametrize("url", ["https://a.example", "https://a.example/"])
def test_public_url_trailing_slash(url: str) -> None:
    web = realm_representation(RealmSpec(public_url=url))["clients"][1]
    assert web["webOrigins"] == ["https://a.example"]
