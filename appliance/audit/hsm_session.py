"""One logged-in session to a PKCS#11 token (an HSM), shared by the audit keys on it
(appliance.audit.hsm).

Failures: at start-up they are :class:`ConfigurationError` naming the cause (module,
token, PIN, key, mechanism); later they are ``OSError``, so the audit writer fails
closed (503) as it does when its database is down. A session found gone (token
pulled, HSM restarted) is reopened once per call before that call gives up.

Concurrency: python-pkcs11 calls C_Initialize without arguments, which tells the
module that the application will not call it from several threads at once (PKCS#11
v2.40 §5.4), and SoftHSM2 then turns its own locking off. Every call into a module
therefore holds :data:`_CRYPTOKI`, one lock for the process: the one global here,
kept because the C library asks for it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass, PKCS11Error

from appliance.errors import ConfigurationError
from appliance.settings.audit import AuditPkcs11Settings

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Cryptoki

__all__ = [
    "REQUIRED_MECHANISMS",
    "SIGNING_MECHANISMS",
    "TokenConfig",
    "TokenSession",
    "choose_algorithm",
    "read_pin",
]

T = TypeVar("T")

# What the appliance asks of the token while it runs, besides the signing mechanism
# of its key (key generation is checked by `appliance audit keys init-hsm`).
REQUIRED_MECHANISMS: dict[str, Mechanism] = {"CKM_AES_GCM": Mechanism.AES_GCM}
# The signing mechanism per algorithm. ECDSA signs a SHA-256 digest made outside the
# token (plain CKM_ECDSA): every token that has ECDSA offers it, fewer offer
# CKM_ECDSA_SHA256, and the note text hashed is public.
SIGNING_MECHANISMS: dict[str, tuple[str, Mechanism]] = {
    "ed25519": ("CKM_EDDSA", Mechanism.EDDSA),
    "ecdsa-p256": ("CKM_ECDSA", Mechanism.ECDSA),
}


def choose_algorithm(setting: str, offered: frozenset[int]) -> str:
    """``audit.keys.pkcs11.algorithm`` resolved against the token's mechanisms: ``auto``
    is Ed25519 where the token offers CKM_EDDSA, else ECDSA P-256."""
    if setting != "auto":
        return setting
    return "ed25519" if int(Mechanism.EDDSA) in offered else "ecdsa-p256"


# A session that fails with one of these is gone; a new one may work.
_LOST = (
    pkcs11.SessionClosed,
    pkcs11.SessionHandleInvalid,
    pkcs11.ObjectHandleInvalid,
    pkcs11.KeyHandleInvalid,
    pkcs11.UserNotLoggedIn,
    pkcs11.DeviceRemoved,
    pkcs11.DeviceError,
    pkcs11.TokenNotPresent,
    pkcs11.TokenNotRecognised,
    pkcs11.SlotIDInvalid,
)

_CRYPTOKI = threading.RLock()


def read_pin(path: Path) -> str:
    """The user PIN from ``path``, a file only its owner may read (like the key files)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"PKCS#11 PIN file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"PKCS#11 PIN file {path} cannot be read: {type(exc).__name__}"
        ) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"PKCS#11 PIN file {path} is readable by others; chmod 600 it")
    pin = text.strip("\r\n")
    if not pin:
        raise ConfigurationError(f"PKCS#11 PIN file {path} is empty")
    return pin


@dataclass(frozen=True)
class TokenConfig:
    """Where the keys are: module, token, PIN file and the two key labels."""

    module: Path
    token_label: str
    pin_file: Path
    signing_key_label: str = "appliance-audit-signing"
    master_key_label: str = "appliance-audit-master"
    algorithm: str = "auto"  # auto | ed25519 | ecdsa-p256

    @classmethod
    def from_settings(cls, section: AuditPkcs11Settings) -> TokenConfig:
        """From ``audit.keys.pkcs11``; ConfigurationError if the token is not named."""
        if section.module is None or section.token_label is None or section.pin_file is None:
            raise ConfigurationError(
                "set audit.keys.pkcs11.module, token_label and pin_file (docs/audit.md, "
                "Keys in an HSM)"
            )
        return cls(
            module=section.module,
            token_label=section.token_label,
            pin_file=section.pin_file,
            signing_key_label=section.signing_key_label,
            master_key_label=section.master_key_label,
            algorithm=section.algorithm,
        )

    @property
    def name(self) -> str:
        return f"PKCS#11 token {self.token_label!r}"


def _load(module: Path) -> Cryptoki:
    if not module.is_file():
        raise ConfigurationError(f"PKCS#11 module not found: {module}")
    try:
        return pkcs11.lib(str(module))
    except PKCS11Error as exc:
        raise ConfigurationError(f"cannot load PKCS#11 module {module}: {exc}") from exc


def _startup_error(config: TokenConfig, exc: PKCS11Error) -> ConfigurationError:
    """The one-line reason a token cannot be used, naming what to fix."""
    where = f"{config.name} (module {config.module})"
    if isinstance(exc, pkcs11.NoSuchToken):
        return ConfigurationError(
            f"no {config.name} in module {config.module}: is the HSM connected and the "
            "token initialised (docs/audit.md, Keys in an HSM)?"
        )
    if isinstance(exc, pkcs11.MultipleTokensReturned):
        return ConfigurationError(f"several tokens are labelled {config.token_label!r}")
    if isinstance(exc, pkcs11.PinIncorrect):
        return ConfigurationError(
            f"{where} refused the PIN in {config.pin_file} (wrong PIN; each try counts "
            "towards locking the token)"
        )
    if isinstance(exc, pkcs11.PinLocked):
        return ConfigurationError(
            f"the user PIN of {config.name} is locked; its security officer must reset it"
        )
    if isinstance(exc, pkcs11.PinExpired | pkcs11.PinInvalid | pkcs11.PinLenRange):
        return ConfigurationError(f"{where} does not accept the PIN in {config.pin_file}")
    if isinstance(exc, pkcs11.UserPinNotInitialized):
        return ConfigurationError(f"{config.name} has no user PIN yet (initialise the token)")
    if isinstance(exc, _LOST):
        return ConfigurationError(f"{where} is not present: {type(exc).__name__}")
    return ConfigurationError(f"{where} failed: {type(exc).__name__} {exc}".rstrip())


class TokenSession:
    """One session to the token, logged in as its user, shared by the keys on it.

    :meth:`call` runs one operation under :data:`_CRYPTOKI`; a session found gone is
    reopened once; any other token failure becomes ``OSError``."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._pin = read_pin(config.pin_file)
        self._session: pkcs11.Session | None = None
        self._found: dict[tuple[ObjectClass, str], pkcs11.Object] = {}
        self.token_model = ""
        self.mechanisms: frozenset[int] = frozenset()  # what the token offers, from open()

    def __repr__(self) -> str:
        return f"TokenSession({self.config.token_label!r}, module={str(self.config.module)!r})"

    def open(self) -> TokenSession:
        """Connect and log in; check that the token offers the mechanisms the appliance
        uses. Raises ConfigurationError naming the cause."""
        with _CRYPTOKI:
            try:
                session = self._connect()
                offered = {int(m) for m in session.token.slot.get_mechanisms()}
            except PKCS11Error as exc:
                self._drop()
                raise _startup_error(self.config, exc) from exc
        self.mechanisms = frozenset(offered)
        missing = [name for name, m in REQUIRED_MECHANISMS.items() if int(m) not in offered]
        if missing:
            self.close()
            raise ConfigurationError(
                f"{self.config.name} ({self.token_model}) lacks {', '.join(missing)}, which "
                "the audit keys need (docs/audit.md, Keys in an HSM)"
            )
        return self

    def require(self, name: str, mechanism: Mechanism, why: str) -> None:
        """ConfigurationError unless the token offers ``mechanism`` (checked at open)."""
        if int(mechanism) not in self.mechanisms:
            self.close()
            raise ConfigurationError(
                f"{self.config.name} ({self.token_model}) lacks {name}, which {why} needs "
                "(docs/audit.md, Keys in an HSM)"
            )

    def _connect(self) -> pkcs11.Session:
        token = _load(self.config.module).get_token(token_label=self.config.token_label)
        try:
            # Read-write: some modules open no read-only sessions (AWS CloudHSM SDK 5
            # fails C_OpenSession without CKF_RW_SESSION); the appliance writes nothing
            # to the token except in `init-hsm`.
            session = token.open(rw=True, user_pin=self._pin)
        except pkcs11.UserAlreadyLoggedIn:
            # Login is per application, not per session (PKCS#11 v2.40 §5.6): another
            # session of this process is logged in already, and this one shares it.
            session = token.open(rw=True)
        self.token_model = f"{token.manufacturer_id.strip()} {token.model.strip()}".strip()
        self._session = session
        return session

    def _drop(self) -> None:
        self._session = None
        self._found.clear()

    def call(self, what: str, operation: Callable[[pkcs11.Session], T]) -> T:
        """``operation(session)`` on a live session; OSError naming ``what`` if the
        token fails or cannot be reached (a ConfigurationError raised by ``operation``
        passes through)."""
        with _CRYPTOKI:
            for attempt in (1, 2):
                session = self._session
                if session is None:
                    try:
                        session = self._connect()
                    except (PKCS11Error, ConfigurationError) as exc:
                        self._drop()
                        reason = exc.message if isinstance(exc, ConfigurationError) else ""
                        raise OSError(
                            f"{self.config.name} cannot be reached to {what}: "
                            f"{reason or type(exc).__name__}"
                        ) from exc
                try:
                    return operation(session)
                except _LOST as exc:
                    self._drop()  # gone: reconnect once, then give up
                    if attempt == 2:
                        raise OSError(
                            f"{self.config.name} failed to {what}: {type(exc).__name__}"
                        ) from exc
                except PKCS11Error as exc:
                    raise OSError(
                        f"{self.config.name} failed to {what}: {type(exc).__name__}"
                    ) from exc
        raise AssertionError("unreachable")

    def find(self, session: pkcs11.Session, object_class: ObjectClass, label: str) -> pkcs11.Object:
        """The one object of ``object_class`` labelled ``label`` (cached per session)."""
        cached = self._found.get((object_class, label))
        if cached is not None:
            return cached
        found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))
        kind = {
            ObjectClass.SECRET_KEY: "secret key",
            ObjectClass.PRIVATE_KEY: "private key",
            ObjectClass.PUBLIC_KEY: "public key",
        }.get(object_class, "object")
        if not found:
            raise ConfigurationError(
                f"{self.config.name} has no {kind} labelled {label!r}; provision it with "
                "`appliance audit keys init-hsm`"
            )
        if len(found) > 1:
            raise ConfigurationError(
                f"{self.config.name} has {len(found)} {kind}s labelled {label!r}; labels "
                "must be unique"
            )
        self._found[(object_class, label)] = found[0]
        return found[0]

    def close(self) -> None:
        """Close the session. This logs the whole process out of the token (login is per
        application), so close only when this process is done with the token."""
        with _CRYPTOKI:
            session, self._session = self._session, None
            self._found.clear()
            if session is not None:
                try:
                    session.close()
                except PKCS11Error:
                    pass  # already gone
