"""Start the Keycloak-shaped test provider (node + oidc-provider) on a free loopback port."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.oidc.flows import Realm

STUB_DIR = Path(__file__).resolve().parent
REQUIRE_ENV = "APPLIANCE_TEST_REQUIRE_OIDC"
KIDS = ("realm-key-1", "realm-key-2")


def unavailable_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the test identity provider is the npm oidc-provider)"
    if not (STUB_DIR / "node_modules" / "oidc-provider").is_dir():
        return "tests/oidc/node_modules is missing: run `make install` (npm ci in tests/oidc)"
    return None


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # PyJWT writes ["sign"]; the realm must also verify with it
    jwk.update(kid=kid, alg="RS256", use="sig")
    return jwk


@dataclass
class KeycloakRealm(Realm):
    """The running provider: its realm, its private keys (to mint tokens with bad
    claims but a genuine signature), and key rotation."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: tuple[str, ...] = KIDS[:1]

    def publish(self, *kids: str) -> None:
        """Rotate realm keys as a Keycloak admin would; the first key signs."""
        httpx.post(f"{self.server_url}/__test/keys", json={"kids": list(kids)}).raise_for_status()
        self.published = kids

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        kid: str | None = None,
        key: Any = None,
        algorithm: str = "RS256",
        headers: Mapping[str, Any] | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        """A Keycloak-shaped access token, signed with the realm key unless told otherwise."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer, "aud": "appliance-gateway", "sub": "minted-user",
            "azp": "svc-batch", "typ": "Bearer", "iat": now, "exp": now + 300,
            "preferred_username": "minted", "realm_access": {"roles": ["appliance-user"]},
        }  # fmt: skip
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        kid = kid or self.published[0]
        return jwt.encode(
            body,
            key if key is not None else self.keys[kid],
            algorithm=algorithm,
            headers={"kid": kid, **(headers or {})},
        )


@contextmanager
def running_provider(workdir: Path) -> Iterator[KeycloakRealm]:
    keys = {kid: new_rsa_key() for kid in KIDS}
    keys_file = workdir / "realm-keys.json"
    keys_file.write_text(json.dumps({"keys": [private_jwk(k, kid) for kid, k in keys.items()]}))
    env = {**os.environ, "PORT": "0", "REALM": "test", "KEYS_FILE": str(keys_file)}
    process = subprocess.Popen(
        ["node", "keycloak_stub.mjs"],
        cwd=STUB_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        issuer = None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while issuer is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith("listening "):
                issuer = line.split(" ", 1)[1].strip()
        if issuer is None:
            raise RuntimeError("test identity provider did not start:\n" + "".join(seen))
        yield KeycloakRealm(issuer=issuer, keys=keys)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
