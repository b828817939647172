"""Identity cost per request with a warm key cache: a Keycloak-shaped RS256 (2048-bit)
access token -> verified claims -> Principal, as the gateway does it (no network: the
JWKS is fetched once before timing). Prints median and p99 in milliseconds.

    .venv/bin/python scripts/bench_identity.py [iterations]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from appliance.identity.claims import ClaimMapping
from appliance.identity.jwks import JwksCache
from appliance.identity.oidc import OidcVerifier
from appliance.identity.tokens import TokenRules

ISSUER = "https://sso.example.internal/realms/appliance"


async def main(iterations: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "RS256"}

    async def fetch() -> dict[str, Any]:
        return {"keys": [public]}

    verifier = OidcVerifier(
        TokenRules(issuer=ISSUER, audiences=frozenset({"appliance-gateway"})),
        JwksCache(fetch),
        ClaimMapping(),
    )
    now = time.time()
    token = jwt.encode(
        {
            "iss": ISSUER, "aud": ["appliance-gateway", "account"], "sub": "f7e3a9c2",
            "azp": "appliance-web", "typ": "Bearer", "iat": int(now), "exp": int(now) + 300,
            "preferred_username": "alice", "email": "alice@example.internal",
            "groups": ["/teams/research", "/staff"],
            "realm_access": {"roles": ["appliance-user", "offline_access", "uma_authorization"]},
            "resource_access": {"appliance-gateway": {"roles": ["invoke"]},
                                "account": {"roles": ["manage-account", "view-profile"]}},
            "scope": "openid profile email", "sid": "5b1c", "jti": "onrtac:1",
        },
        key, algorithm="RS256", headers={"kid": "k1", "typ": "JWT"},
    )  # fmt: skip
    await verifier.principal(token, now=now)  # warm the key cache
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        await verifier.principal(token, now=now)
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    median = statistics.median(samples) / 1e6
    p99 = samples[int(len(samples) * 0.99) - 1] / 1e6
    print(
        f"identity per request (warm JWKS cache, RS256-2048): median {median:.3f} ms, "
        f"p99 {p99:.3f} ms over {iterations} requests; JWKS fetches: {verifier.jwks.fetches}"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
