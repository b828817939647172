"""Putting the audit keys into a PKCS#11 token and reporting on them: `appliance audit
keys init-hsm`, `appliance audit keys status` and `appliance doctor`.

Keys are made in the token (CKM_EC_EDWARDS_KEY_PAIR_GEN, or CKM_EC_KEY_PAIR_GEN for ECDSA
P-256 where the token lacks EdDSA or audit.keys.pkcs11.algorithm asks for it;
CKM_AES_KEY_GEN), or imported
from today's key files so that existing checkpoints keep verifying under the same
public key and existing subject keys keep unwrapping. Either way the secret halves are
CKA_SENSITIVE and not CKA_EXTRACTABLE: the token never hands them out again. Provisioning
is idempotent: keys already on the token are kept (and, when importing, compared).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pkcs11
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, PKCS11Error

from appliance.audit.checkpoint import NoteSigner
from appliance.audit.hsm import (
    ED25519_PARAMS,
    P256_PARAMS,
    Pkcs11MasterKey,
    Pkcs11SigningKey,
)
from appliance.audit.hsm_session import TokenConfig, TokenSession, choose_algorithm
from appliance.config import Settings
from appliance.errors import ConfigurationError, VerificationError
from appliance.keys.provider import FileKeyProvider
from appliance.keys.signing import load_signer

__all__ = [
    "KeyFacts",
    "TokenReport",
    "file_keys",
    "inspect_token",
    "key_backend_findings",
    "key_backend_report",
    "provision",
    "read_master_key_file",
]

# Whatever else a key could do is switched off: the master key only en- and decrypts
# (CKM_AES_GCM), the signing key only signs. (CKA_WRAP is not an attribute of private
# keys: SoftHSM2 refuses it there.)
_NOTHING_ELSE = {Attribute.UNWRAP: False, Attribute.DERIVE: False}
_SECRET = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
           Attribute.EXTRACTABLE: False}  # fmt: skip


@dataclass(frozen=True)
class KeyFacts:
    """What the token says about a secret key (PKCS#11 v2.40 §4.7-4.9)."""

    label: str
    kind: str
    sensitive: bool  # CKA_SENSITIVE: its value cannot be read
    extractable: bool  # CKA_EXTRACTABLE: it can be wrapped out of the token
    always_sensitive: bool  # CKA_ALWAYS_SENSITIVE
    never_extractable: bool  # CKA_NEVER_EXTRACTABLE
    local: bool  # CKA_LOCAL: generated in the token, not imported

    @property
    def protected(self) -> bool:
        return self.sensitive and not self.extractable

    def describe(self) -> str:
        origin = "generated in the token" if self.local else "imported"
        state = "sensitive, not extractable" if self.protected else "READABLE OR EXTRACTABLE"
        if self.protected and self.always_sensitive and self.never_extractable:
            state = "sensitive and never extractable"
        return f"{self.kind} {self.label!r}: {state}, {origin}"


@dataclass(frozen=True)
class TokenReport:
    token: str
    model: str
    verifier_key: str  # <origin>+<hex key id>+base64(0x01 || public key)
    master_key_id: str
    signing: KeyFacts
    master: KeyFacts
    done: tuple[str, ...] = ()  # what provisioning changed on the token


def read_master_key_file(path: Path) -> bytes:
    """The raw 32 bytes of a file master key, checked as FileKeyProvider checks it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"audit master key file not found: {path}") from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"audit master key file {path} is readable by others")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"audit master key file {path} is not base64") from exc
    if len(key) != 32:
        raise ConfigurationError("the audit master key must be 32 bytes")
    return key


def _facts(key: pkcs11.Object, label: str, kind: str) -> KeyFacts:
    def flag(attribute: Attribute) -> bool:
        try:
            return bool(key[attribute])
        except PKCS11Error:
            return False

    return KeyFacts(
        label=label,
        kind=kind,
        sensitive=flag(Attribute.SENSITIVE),
        extractable=flag(Attribute.EXTRACTABLE),
        always_sensitive=flag(Attribute.ALWAYS_SENSITIVE),
        never_extractable=flag(Attribute.NEVER_EXTRACTABLE),
        local=flag(Attribute.LOCAL),
    )


def _objects(live: pkcs11.Session, object_class: ObjectClass, label: str) -> list[pkcs11.Object]:
    return list(live.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))


def _require(session: TokenSession, live: pkcs11.Session, name: str, mechanism: Mechanism) -> None:
    if int(mechanism) not in {int(m) for m in live.token.slot.get_mechanisms()}:
        raise ConfigurationError(
            f"{session.config.name} cannot generate the key (it lacks {name}); import one "
            "instead (--import-files)"
        )


def _put_master_key(
    session: TokenSession, live: pkcs11.Session, key: bytes | None
) -> tuple[str, ...]:
    label = session.config.master_key_label
    if _objects(live, ObjectClass.SECRET_KEY, label):
        return ()
    template = {**_SECRET, **_NOTHING_ELSE, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                Attribute.WRAP: False, Attribute.SIGN: False, Attribute.VERIFY: False}  # fmt: skip
    if key is None:
        _require(session, live, "CKM_AES_KEY_GEN", Mechanism.AES_KEY_GEN)
        live.generate_key(
            KeyType.AES, 256, id=os.urandom(16), label=label, store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT, template=template,
        )  # fmt: skip
        return (f"generated master key {label!r} (AES-256)",)
    live.create_object({
        **template, Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: key, Attribute.LABEL: label, Attribute.ID: os.urandom(16),
    })  # fmt: skip
    return (f"imported master key {label!r} (AES-256)",)


def _put_signing_key(
    session: TokenSession, live: pkcs11.Session, key: Ed25519PrivateKey | None
) -> tuple[str, ...]:
    label = session.config.signing_key_label
    private = _objects(live, ObjectClass.PRIVATE_KEY, label)
    public = _objects(live, ObjectClass.PUBLIC_KEY, label)
    if private and public:
        return ()
    if private or public:
        raise ConfigurationError(
            f"{session.config.name} holds only half of the key pair {label!r}; remove it "
            "(e.g. pkcs11-tool --delete-object) and run init-hsm again"
        )
    ident = os.urandom(16)
    algorithm = choose_algorithm(session.config.algorithm, session.mechanisms)
    ecdsa = algorithm == "ecdsa-p256"
    public_template = {Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
                       Attribute.ENCRYPT: False, Attribute.WRAP: False,
                       Attribute.EC_PARAMS: P256_PARAMS if ecdsa else ED25519_PARAMS}  # fmt: skip
    private_template = {**_SECRET, **_NOTHING_ELSE, Attribute.SIGN: True,
                        Attribute.DECRYPT: False}  # fmt: skip
    if ecdsa:
        if key is not None:
            raise ConfigurationError(
                f"the signing key file holds an Ed25519 key, but {session.config.name} is to "
                "sign with ECDSA P-256; use `appliance audit keys migrate --to pkcs11`, which "
                "starts a new key and records the change in the log's key history"
            )
        _require(session, live, "CKM_EC_KEY_PAIR_GEN", Mechanism.EC_KEY_PAIR_GEN)
        live.generate_keypair(
            KeyType.EC, id=ident, label=label, store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
            public_template=public_template, private_template=private_template,
        )  # fmt: skip
        return (f"generated signing key {label!r} (ECDSA P-256)",)
    if key is None:
        _require(session, live, "CKM_EC_EDWARDS_KEY_PAIR_GEN", Mechanism.EC_EDWARDS_KEY_PAIR_GEN)
        live.generate_keypair(
            KeyType.EC_EDWARDS, id=ident, label=label, store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            public_template=public_template, private_template=private_template,
        )  # fmt: skip
        return (f"generated signing key {label!r} (Ed25519)",)
    point = key.public_key().public_bytes_raw()
    live.create_object({
        **private_template, Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.EC_PARAMS: ED25519_PARAMS,
        Attribute.VALUE: key.private_bytes_raw(), Attribute.LABEL: label, Attribute.ID: ident,
    })  # fmt: skip
    live.create_object({
        **public_template, Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.EC_POINT: b"\x04\x20" + point,
        Attribute.LABEL: label, Attribute.ID: ident,
    })  # fmt: skip
    return (f"imported signing key {label!r} (Ed25519)",)


def _report(session: TokenSession, origin: str, done: tuple[str, ...]) -> TokenReport:
    config = session.config
    master = Pkcs11MasterKey(session)
    signing = Pkcs11SigningKey(session)
    algorithm = "ECDSA P-256" if signing.algorithm == "ecdsa-p256" else "Ed25519"

    def facts(live: pkcs11.Session) -> tuple[KeyFacts, KeyFacts]:
        return (
            _facts(
                session.find(live, ObjectClass.PRIVATE_KEY, config.signing_key_label),
                config.signing_key_label,
                f"{algorithm} signing key",
            ),
            _facts(
                session.find(live, ObjectClass.SECRET_KEY, config.master_key_label),
                config.master_key_label,
                "AES-256 master key",
            ),
        )

    signing_facts, master_facts = session.call("read key attributes", facts)
    return TokenReport(
        token=config.token_label,
        model=session.token_model,
        verifier_key=NoteSigner(origin, signing).verifier().verifier_key(),
        master_key_id=master.key_id,
        signing=signing_facts,
        master=master_facts,
        done=done,
    )


def provision(
    config: TokenConfig,
    origin: str,
    *,
    master_key: bytes | None = None,
    signing_key: NoteSigner | None = None,
) -> TokenReport:
    """Make the two keys on the token, or import the given ones; keep keys already there
    (an imported key must then equal the one on the token)."""
    session = TokenSession(config).open()
    try:
        done = session.call(
            "store the keys",
            lambda live: (
                _put_master_key(session, live, master_key)
                + _put_signing_key(
                    session, live, None if signing_key is None else _private(signing_key)
                )
            ),
        )
        report = _report(session, origin, done)
        _compare(session, report, master_key, signing_key)
        return report
    except OSError as exc:  # the token failed: at the admin's desk, a one-line error
        raise ConfigurationError(str(exc)) from exc
    finally:
        session.close()


def _private(signer: NoteSigner) -> Ed25519PrivateKey:
    if not isinstance(signer.private_key, Ed25519PrivateKey):
        raise ConfigurationError("only a signing key from a file can be imported")
    return signer.private_key


def _compare(
    session: TokenSession,
    report: TokenReport,
    master_key: bytes | None,
    signing_key: NoteSigner | None,
) -> None:
    """An imported key that met a key already on the token must be that key."""
    name = session.config.name
    if signing_key is not None and report.verifier_key != signing_key.verifier().verifier_key():
        raise ConfigurationError(
            f"{name} already holds a different signing key labelled "
            f"{session.config.signing_key_label!r}; choose another label"
        )
    if master_key is not None:
        probe = FileKeyProvider(master_key).wrap(b"\0" * 32, context=b"appliance/hsm-compare")
        try:
            Pkcs11MasterKey(session).unwrap(probe, context=b"appliance/hsm-compare")
        except VerificationError as exc:
            raise ConfigurationError(
                f"{name} already holds a different master key labelled "
                f"{session.config.master_key_label!r}; choose another label"
            ) from exc


def inspect_token(config: TokenConfig, origin: str) -> TokenReport:
    """Log in and report on both keys; ConfigurationError if either is wrong."""
    session = TokenSession(config).open()
    try:
        return _report(session, origin, ())
    except OSError as exc:
        raise ConfigurationError(str(exc)) from exc
    finally:
        session.close()


def file_keys(settings: Settings) -> tuple[bytes, NoteSigner]:
    """Today's file keys, to import: the master key and the signing key."""
    audit = settings.audit
    secrets_dir = settings.data_dir / "secrets"
    master = read_master_key_file(audit.master_key_file or secrets_dir / "audit_master_key")
    signer = load_signer(
        audit.signing_key_file or secrets_dir / "audit_signing_key", audit.origin, create=False
    )
    return master, signer


def key_backend_findings(settings: Settings) -> list[tuple[str, str]]:
    """(level, message) lines for `appliance doctor`: where the audit keys are, and for a
    token, whether it holds them as it should (this logs in to it)."""
    return key_backend_report(settings)[0]


def key_backend_report(settings: Settings) -> tuple[list[tuple[str, str]], TokenReport | None]:
    """The findings of :func:`key_backend_findings`, and the token's report if one was
    read."""
    audit = settings.audit
    secrets_dir = settings.data_dir / "secrets"
    if audit.keys.backend == "file":
        master = (
            f"Vault transit key {audit.vault_key}"
            if audit.key_provider == "vault"
            else f"file {audit.master_key_file or secrets_dir / 'audit_master_key'}"
        )
        signing = audit.signing_key_file or secrets_dir / "audit_signing_key"
        return [(
            "ok", f"audit keys: signing key in file {signing}, master key in {master} "
            "(audit.keys.backend pkcs11 keeps both in an HSM)",
        )], None  # fmt: skip
    try:
        config = TokenConfig.from_settings(audit.keys.pkcs11)
        report = inspect_token(config, audit.origin)
    except (ConfigurationError, OSError) as exc:
        message = exc.message if isinstance(exc, ConfigurationError) else str(exc)
        return [("fail", f"audit keys: {message}")], None
    findings: list[tuple[str, str]] = []
    for facts in (report.signing, report.master):
        level = "ok" if facts.protected else "fail"
        if facts.protected and not facts.local:
            level = "warn"  # copies may exist wherever it was imported from
        findings.append((level, f"audit keys: {config.name} ({report.model}): {facts.describe()}"))
    if report.model.startswith("SoftHSM"):
        findings.append((
            "warn", "audit keys: SoftHSM2 is a software token (its keys are files under its "
            "tokendir, protected by the PIN); use a hardware HSM in production",
        ))  # fmt: skip
    return findings, report
