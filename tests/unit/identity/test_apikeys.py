"""appliance/identity/apikeys.py: random keys, keyed hashes, the key table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select

from appliance.db import api_keys
from appliance.identity import (
    API_KEY_PREFIX,
    ApiKeyService,
    AuthMethod,
    bootstrap_admin_key,
    generate_api_key,
    hash_api_key,
)
from appliance.identity.apikeys import ADMIN_ROLES

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PEPPER = "test-pepper"


# -- pure functions ---------------------------------------------------------------------


def test_generated_key_has_prefix_and_256_bits() -> None:
    key = generate_api_key()
    assert key.startswith(API_KEY_PREFIX)
    assert API_KEY_PREFIX == "sk-appl-"
    body = key.removeprefix(API_KEY_PREFIX)
    # 32 random bytes in unpadded urlsafe base64 is 43 characters (>= 256 bits).
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body), body


def test_generated_keys_are_unique() -> None:
    keys = {generate_api_key() for _ in range(2000)}
    assert len(keys) == 2000


def test_hash_is_deterministic_hex_sha256() -> None:
    digest = hash_api_key("p", "sk-appl-abc")
    assert digest == hash_api_key("p", "sk-appl-abc")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_hash_depends_on_pepper_and_secret() -> None:
    secret = generate_api_key()
    assert hash_api_key("pepper-a", secret) != hash_api_key("pepper-b", secret)
    assert hash_api_key("pepper-a", secret) != hash_api_key("pepper-a", generate_api_key())
    assert secret not in hash_api_key("pepper-a", secret)


# -- the service on both backends -------------------------------------------------------


@pytest.fixture
def service(migrated_engine: Engine) -> ApiKeyService:
    return ApiKeyService(migrated_engine, PEPPER)


def stored_rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(api_keys))]


def test_create_then_authenticate(service: ApiKeyService) -> None:
    created = service.create(
        name="ci", owner="bob", roles=["appliance-user", "research"], models=["llama-*"], now=NOW
    )

    record = service.authenticate(created.secret, now=NOW + timedelta(minutes=1))

    assert record is not None
    assert record == created.record
    assert record.created_at == NOW
    assert record.created_at.tzinfo is not None
    principal = record.principal()
    assert principal.roles == frozenset({"appliance-user", "research"})
    assert principal.model_globs == ("llama-*",)
    assert principal.auth_method is AuthMethod.API_KEY
    assert principal.username == "bob"
    assert principal.key_id == created.record.key_id
    assert principal.subject == f"apikey:{created.record.key_id}"


def test_models_none_means_no_credential_restriction(service: ApiKeyService) -> None:
    created = service.create(name="n", owner="o", roles=["appliance-user"], models=None, now=NOW)
    record = service.authenticate(created.secret, now=NOW)
    assert record is not None
    assert record.models is None
    assert record.principal().model_globs is None


def test_wrong_secret_is_refused(service: ApiKeyService) -> None:
    created = service.create(name="n", owner="o", roles=["r"], models=None, now=NOW)

    assert service.authenticate(generate_api_key(), now=NOW) is None
    assert service.authenticate(created.secret + "x", now=NOW) is None
    assert service.authenticate(created.secret[:-1], now=NOW) is None
    assert service.authenticate(created.secret.removeprefix(API_KEY_PREFIX), now=NOW) is None
    assert service.authenticate("", now=NOW) is None


def test_other_pepper_does_not_authenticate(
    service: ApiKeyService, migrated_engine: Engine
) -> None:
    created = service.create(name="n", owner="o", roles=["r"], models=None, now=NOW)
    other = ApiKeyService(migrated_engine, "another-pepper")
    assert other.authenticate(created.secret, now=NOW) is None
    assert service.authenticate(created.secret, now=NOW) is not None


def test_revoke(service: ApiKeyService) -> None:
    created = service.create(name="n", owner="o", roles=["r"], models=None, now=NOW)
    kept = service.create(name="k", owner="o", roles=["r"], models=None, now=NOW)
    later = NOW + timedelta(hours=1)

    assert service.revoke(created.record.key_id, now=later) is True

    assert service.authenticate(created.secret, now=later) is None
    assert service.authenticate(kept.secret, now=later) is not None
    assert service.revoke(created.record.key_id, now=later) is False
    assert service.revoke("no-such-key", now=later) is False
    revoked = {r.key_id: r for r in service.list()}[created.record.key_id]
    assert revoked.revoked_at == later
    assert not revoked.is_active(later)


def test_expired_key_is_refused(service: ApiKeyService) -> None:
    expires = NOW + timedelta(days=1)
    created = service.create(
        name="n", owner="o", roles=["r"], models=None, now=NOW, expires_at=expires
    )

    assert service.authenticate(created.secret, now=expires - timedelta(seconds=1)) is not None
    assert service.authenticate(created.secret, now=expires) is None
    assert service.authenticate(created.secret, now=expires + timedelta(days=1)) is None


def test_list_returns_records_oldest_first(service: ApiKeyService) -> None:
    second = service.create(
        name="b", owner="o", roles=["r"], models=None, now=NOW + timedelta(seconds=5)
    )
    first = service.create(name="a", owner="o", roles=["r"], models=None, now=NOW)

    assert service.list() == [first.record, second.record]
    assert service.count() == 2


def test_secret_never_stored(service: ApiKeyService, migrated_engine: Engine) -> None:
    secrets = [
        service.create(name=f"k{i}", owner="o", roles=["r"], models=["*"], now=NOW).secret
        for i in range(3)
    ]

    rows = stored_rows(migrated_engine)

    assert len(rows) == 3
    for row in rows:
        assert row["key_hash"] not in secrets
        for secret in secrets:
            body = secret.removeprefix(API_KEY_PREFIX)
            for column, value in row.items():
                assert body not in str(value), column
    assert {row["key_hash"] for row in rows} == {hash_api_key(PEPPER, s) for s in secrets}


def test_records_keep_their_instant_for_non_utc_times(
    service: ApiKeyService, request: pytest.FixtureRequest
) -> None:
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2025, 3, 1, 14, 0, tzinfo=plus_two)  # 12:00 UTC
    created = service.create(
        name="tz",
        owner="o",
        roles=["r"],
        models=None,
        now=now,
        expires_at=now + timedelta(hours=1),  # 13:00 UTC
    )

    (stored,) = service.list()

    assert stored.created_at == created.record.created_at
    assert stored.expires_at == created.record.expires_at
    # Consequence of the shift: the key would still work after it expired.
    assert service.authenticate(created.secret, now=datetime(2025, 3, 1, 14, tzinfo=UTC)) is None


def test_bootstrap_admin_key_only_on_empty_table(service: ApiKeyService) -> None:
    admin = bootstrap_admin_key(service, now=NOW)

    assert admin is not None
    assert admin.record.roles == ADMIN_ROLES
    assert admin.record.models is None
    record = service.authenticate(admin.secret, now=NOW)
    assert record is not None
    assert "appliance-admin" in record.principal().roles

    assert bootstrap_admin_key(service, now=NOW) is None
    assert service.count() == 1


def test_bootstrap_skipped_when_any_key_exists(service: ApiKeyService) -> None:
    existing = service.create(name="n", owner="o", roles=["r"], models=None, now=NOW)
    service.revoke(existing.record.key_id, now=NOW)

    assert bootstrap_admin_key(service, now=NOW) is None
    assert service.count() == 1
