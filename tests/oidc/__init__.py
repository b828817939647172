"""The test identity provider (npm oidc-provider, Keycloak-shaped) and its helpers."""
