"""A fresh SoftHSM2 token per test: its own config and token directory under tmp_path.

Tests skip with the reason when SoftHSM2 is not installed (Debian: softhsm2), or fail
when APPLIANCE_TEST_REQUIRE_SOFTHSM=1 (CI, where `make install` installs it).

SoftHSM2 reads SOFTHSM2_CONF, and finds its tokens, at C_Initialize; python-pkcs11
initialises a module once per process. So each new token is followed by a
re-initialisation of the module, which also ends every session earlier tests left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest

from appliance.audit import hsm_session
from appliance.audit.hsm_session import TokenConfig

REQUIRE_SOFTHSM_ENV = "APPLIANCE_TEST_REQUIRE_SOFTHSM"
MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib64/pkcs11/libsofthsm2.so"),
)
SO_PIN = "12345678"
PIN = "87654321"
LABEL = "appliance-test"


@dataclass
class SoftHsm:
    module: Path
    conf: Path
    tokendir: Path
    pin_file: Path
    label: str = LABEL

    def config(self, **labels: str) -> TokenConfig:
        return TokenConfig(self.module, self.label, self.pin_file, **labels)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The ``audit.keys`` section for this token."""
        token = {"module": str(self.module), "token_label": self.label,
                 "pin_file": str(self.pin_file), **overrides}  # fmt: skip
        return {"backend": "pkcs11", "pkcs11": token}

    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def init_token(self, label: str, pin: str = PIN) -> None:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--so-pin", SO_PIN, "--pin", pin],
            check=True, capture_output=True, env=self.env(),
        )  # fmt: skip
        self.reinitialize()

    def remove_token(self) -> None:
        """The token disappears (pulled, HSM down): its directory moves aside."""
        self.tokendir.rename(self.tokendir.with_name("tokens-aside"))
        self.tokendir.mkdir()  # SoftHSM2 does not initialise without one
        self.reinitialize()

    def restore_token(self) -> None:
        self.tokendir.rmdir()
        self.tokendir.with_name("tokens-aside").rename(self.tokendir)
        self.reinitialize()

    def reinitialize(self) -> None:
        """Make the loaded module read the config and tokens again (under the lock the
        appliance holds around every call into the module, as a gateway thread may be
        using it)."""
        with hsm_session._CRYPTOKI:
            pkcs11.lib(str(self.module)).reinitialize()


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_SOFTHSM_ENV) == "1":
        pytest.fail(f"{REQUIRE_SOFTHSM_ENV}=1 but {reason}")
    pytest.skip(reason)


def softhsm_module() -> Path:
    """The SoftHSM2 module, or skip (fail under APPLIANCE_TEST_REQUIRE_SOFTHSM=1)."""
    module = next((m for m in MODULES if m.is_file()), None)
    if module is None or shutil.which("softhsm2-util") is None:
        _unavailable("SoftHSM2 is not installed (Debian: apt-get install softhsm2)")
    assert module is not None
    return module


def new_softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """An initialised token (user PIN in a 0600 file) that the module now sees."""
    module = softhsm_module()
    tokendir = tmp_path / "softhsm-tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n",
        encoding="ascii",
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(PIN + "\n", encoding="ascii")
    pin_file.chmod(0o600)
    hsm = SoftHsm(module, conf, tokendir, pin_file)
    hsm.init_token(LABEL)
    return hsm
