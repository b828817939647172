"""Getting real tokens from the test identity provider, as a client would."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

WEB_CLIENT = "appliance-web"
REDIRECT_URI = "http://127.0.0.1:1/auth/callback"  # loopback: any port is accepted


@dataclass
class Realm:
    """Where the provider listens and which realm it serves."""

    issuer: str  # http://127.0.0.1:PORT/realms/test

    @property
    def server_url(self) -> str:
        return self.issuer.split("/realms/", 1)[0]

    @property
    def realm(self) -> str:
        return self.issuer.rsplit("/", 1)[1]

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def service_token(
        self, client_id: str = "svc-batch", secret: str = "svc-batch-secret", **extra: str
    ) -> str:
        """A client-credentials access token (a Keycloak service account)."""
        response = httpx.post(
            self.token_endpoint,
            data={"grant_type": "client_credentials", **extra},
            auth=(client_id, secret),
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def user_tokens(self, username: str, password: str | None = None) -> dict[str, str]:
        """Authorization code + PKCE through the provider's login page, like a browser."""
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = urlencode(
            {
                "client_id": WEB_CLIENT,
                "response_type": "code",
                "scope": "openid profile email",
                "redirect_uri": REDIRECT_URI,
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        with httpx.Client(base_url=self.server_url) as browser:
            page = browser.get(f"{self.issuer}/protocol/openid-connect/auth?{query}")
            while page.is_redirect:
                page = browser.get(page.headers["location"])
            action = re.search(r'action="([^"]+)"', page.text)
            assert action, page.text
            answer = browser.post(
                action.group(1),
                data={"username": username, "password": password or f"{username}-pass"},
            )
            while answer.is_redirect and not answer.headers["location"].startswith(REDIRECT_URI):
                answer = browser.get(answer.headers["location"])
            location = answer.headers.get("location", "")
            assert location.startswith(REDIRECT_URI), answer.text
            code = parse_qs(urlparse(location).query)["code"][0]
            tokens = browser.post(
                self.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT_URI,
                    "client_id": WEB_CLIENT,
                    "code_verifier": verifier,
                },
            )
            tokens.raise_for_status()
            return {key: str(value) for key, value in tokens.json().items()}
