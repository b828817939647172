#!/usr/bin/env bash
# Test tools outside the venv, called by `make install`; safe to re-run.
#  - the test identity provider (npm oidc-provider, pinned by tests/oidc/package-lock.json)
#  - Debian's chromium for the browser tests (never a browser downloaded by a test tool)
#  - Debian's nftables, to check the rendered egress rules
#  - Debian's softhsm2, a PKCS#11 token for the audit-keys-in-an-HSM tests
#  - Debian's rsyslog and rsyslog-gnutls, the SIEM receiver for the audit forwarding tests
#  - Debian's container tools for `make image` and its tests: mmdebstrap, umoci, skopeo,
#    podman and runc (no container registry is ever used)
# Each is skipped with a message when this machine cannot install it; the tests that
# need it then skip with the reason (CI sets APPLIANCE_TEST_REQUIRE_OIDC=1 to fail instead).
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

step "test identity provider (tests/oidc: npm ci)"
if command -v npm >/dev/null 2>&1; then
    (cd tests/oidc && npm ci --no-audit --no-fund)
else
    echo "npm not found: the identity-provider tests will be skipped"
fi

step "nftables for the egress-lockdown tests (nft -c checks the rendered rules)"
if command -v nft >/dev/null 2>&1; then
    echo "found $(command -v nft)"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables \
        || echo "could not install nftables: the nft checks will be skipped"
else
    echo "no nft and no root apt-get: the nft checks will be skipped"
fi

step "strace for the engine egress test (every connect() of the engine's processes)"
if command -v strace >/dev/null 2>&1; then
    echo "found $(command -v strace)"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace \
        || echo "could not install strace: the engine egress test will be skipped"
else
    echo "no strace and no root apt-get: the engine egress test will be skipped"
fi

step "softhsm2 for the audit HSM tests (a PKCS#11 token: softhsm2-util, libsofthsm2.so)"
if command -v softhsm2-util >/dev/null 2>&1; then
    echo "found $(command -v softhsm2-util)"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 \
        || echo "could not install softhsm2: the HSM tests will be skipped"
else
    echo "no softhsm2-util and no root apt-get: the HSM tests will be skipped"
fi

step "rsyslog with TLS for the audit forwarding tests (rsyslogd, GnuTLS network driver)"
if command -v rsyslogd >/dev/null 2>&1 && ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; then
    echo "found $(command -v rsyslogd) with lmnsd_gtls"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    # Only the packages: the tests start their own rsyslogd; the system one stays as it is.
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-gnutls \
        || echo "could not install rsyslog: the rsyslog forwarding tests will be skipped"
else
    echo "no rsyslogd with GnuTLS and no root apt-get: the rsyslog forwarding tests will be skipped"
fi

step "chromium for browser tests"
if [ -x /usr/bin/chromium ]; then
    echo "found /usr/bin/chromium"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
        || echo "could not install chromium: the browser tests will be skipped"
else
    echo "no /usr/bin/chromium and no root apt-get: the browser tests will be skipped"
fi

step "container tools for make image (mmdebstrap, umoci, skopeo, podman, runc)"
IMAGE_TOOLS="mmdebstrap umoci skopeo podman runc"
missing=""
for tool in $IMAGE_TOOLS; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -z "$missing" ]; then
    echo "found $IMAGE_TOOLS"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    # shellcheck disable=SC2086  # one package per word
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $IMAGE_TOOLS \
        || echo "could not install the container tools: make image and its tests will not run"
else
    echo "missing:$missing and no root apt-get: make image and the image tests will not run"
fi
