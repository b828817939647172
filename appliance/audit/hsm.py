"""The audit log's keys in a PKCS#11 token (an HSM): signing and wrapping happen in the
token, and neither secret key ever leaves it.

- The checkpoint signing key is an Ed25519 key pair (CKK_EC_EDWARDS on id-Ed25519,
  RFC 8410). Notes are signed with CKM_EDDSA without parameters, which is pure
  Ed25519 (PKCS#11 v3.0 §2.3.14): the signature is the one a software key would make,
  so every verifier, the standalone one included, checks it unchanged. The public key
  is read from the token.
- On a token without EdDSA (many HSMs still implement PKCS#11 v2.40 only) it is an
  ECDSA P-256 key pair (CKK_EC on prime256v1) instead: CKM_ECDSA signs SHA-256 of the
  note text, and the raw ``r || s`` it answers (PKCS#11 v2.40 §2.3.1) is DER-encoded,
  which is C2SP signed-note type 0x02 (appliance.audit.checkpoint).
- The master key is an AES-256 secret key. It wraps each subject key with CKM_AES_GCM
  inside the token: a random 96-bit IV, the wrap context as additional authenticated
  data, a 128-bit tag, laid out ``IV || ciphertext || tag`` exactly as
  :class:`~appliance.keys.provider.FileKeyProvider` lays it out. A file master key
  imported into the token therefore still opens every subject key it wrapped.

Both work through one :class:`~appliance.audit.hsm_session.TokenSession`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, GCMParams, Mechanism, ObjectClass, PKCS11Error
from pkcs11.types import DecryptMixin, EncryptMixin, SignMixin

from appliance.audit.checkpoint import NoteSigner, NoteVerifier, PublicKey, check_signature
from appliance.audit.hsm_session import (
    SIGNING_MECHANISMS,
    TokenConfig,
    TokenSession,
)
from appliance.errors import ConfigurationError, VerificationError

__all__ = [
    "ED25519_PARAMS",
    "P256_PARAMS",
    "HsmKeys",
    "Pkcs11MasterKey",
    "Pkcs11SigningKey",
    "ed25519_point",
    "open_hsm_keys",
    "p256_point",
]

# DER of the object identifier id-Ed25519 (1.3.101.112, RFC 8410): CKA_EC_PARAMS.
ED25519_PARAMS = bytes.fromhex("06032b6570")
# ... or the printable string "edwards25519", which PKCS#11 v3.0 also allows.
_ED25519_NAMED = b"\x13\x0cedwards25519"
# DER of the object identifier prime256v1 / secp256r1 (1.2.840.10045.3.1.7, RFC 5480).
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
_NONCE = 12
_TAG = 16
# Signed and wrapped at start-up to test the keys. The NUL and the missing final
# newline keep it from ever being a signed-note text (C2SP signed-note), so the log key
# signs nothing a verifier could take for a note.
_SELF_TEST = b"appliance-audit/hsm-self-test/v1\0"


def _joined(value: bytes | Iterator[bytes]) -> bytes:
    """python-pkcs11 answers bytes, or chunks when given chunks (never here)."""
    return value if isinstance(value, bytes) else b"".join(value)


def ed25519_point(value: bytes) -> bytes:
    """The 32 raw bytes of an Ed25519 CKA_EC_POINT: raw, or a DER OCTET STRING (SoftHSM2
    and most tokens)."""
    if len(value) == 34 and value[:2] == b"\x04\x20":
        return value[2:]
    if len(value) == 32:
        return value
    raise ConfigurationError("the token's signing public key is not an Ed25519 point")


def p256_point(value: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a CKA_EC_POINT: the uncompressed point ``04 || X || Y``,
    raw or in a DER OCTET STRING (PKCS#11 v2.40 §2.3.3; SoftHSM2 wraps it)."""
    if len(value) == 67 and value[:2] == b"\x04\x41":
        value = value[2:]
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), value)
    except ValueError as exc:
        raise ConfigurationError("the token's signing public key is not a P-256 point") from exc


class Pkcs11MasterKey:
    """A :class:`~appliance.keys.provider.KeyProvider` whose AES-256 key stays in the
    token: subject keys are wrapped and unwrapped there with CKM_AES_GCM."""

    def __init__(self, session: TokenSession) -> None:
        self._session = session
        self._label = session.config.master_key_label

        def check_value(live: pkcs11.Session) -> bytes:
            key = self._key(live)
            if key[Attribute.KEY_TYPE] != pkcs11.KeyType.AES or key[Attribute.VALUE_LEN] != 32:
                raise ConfigurationError(
                    f"the master key {self._label!r} on {session.config.name} is not AES-256"
                )
            try:
                return bytes(key[Attribute.CHECK_VALUE])
            except PKCS11Error:  # CKA_CHECK_VALUE is PKCS#11 v2.40; older tokens lack it
                return b""

        check = session.call("read the master key", check_value)
        self._key_id = f"pkcs11:{self._label}" + (f":{check.hex()}" if check else "")
        # A token that picks its own GCM IV and ignores the one given (AWS CloudHSM
        # documents this) would wrap keys that never unwrap: refuse it now.
        probe = os.urandom(32)
        try:
            same = self.unwrap(self.wrap(probe, context=_SELF_TEST), context=_SELF_TEST) == probe
        except VerificationError:
            same = False
        if not same:
            raise ConfigurationError(
                f"the master key {self._label!r} on {session.config.name} does not unwrap what "
                "it wrapped (does the token choose its own AES-GCM IV?); it cannot hold the "
                "audit master key"
            )

    def _key(self, live: pkcs11.Session) -> pkcs11.Object:
        return self._session.find(live, ObjectClass.SECRET_KEY, self._label)

    def _encrypting(self, live: pkcs11.Session) -> EncryptMixin:
        key = self._key(live)
        if not isinstance(key, EncryptMixin):
            raise ConfigurationError(f"the master key {self._label!r} lacks CKA_ENCRYPT")
        return key

    def _decrypting(self, live: pkcs11.Session) -> DecryptMixin:
        key = self._key(live)
        if not isinstance(key, DecryptMixin):
            raise ConfigurationError(f"the master key {self._label!r} lacks CKA_DECRYPT")
        return key

    @property
    def key_id(self) -> str:
        """``pkcs11:<label>:<hex CKA_CHECK_VALUE>`` (not secret)."""
        return self._key_id

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        params = GCMParams(nonce, context, _TAG * 8)
        sealed = self._session.call(
            "wrap a subject key",
            lambda live: self._encrypting(live).encrypt(
                key, mechanism=Mechanism.AES_GCM, mechanism_param=params
            ),
        )
        return nonce + _joined(sealed)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        if len(wrapped) < _NONCE + _TAG:
            raise VerificationError("wrapped key does not open with this master key")
        params = GCMParams(wrapped[:_NONCE], context, _TAG * 8)

        def operation(live: pkcs11.Session) -> bytes | None:
            try:
                return _joined(
                    self._decrypting(live).decrypt(
                        wrapped[_NONCE:], mechanism=Mechanism.AES_GCM, mechanism_param=params
                    )
                )
            except (pkcs11.EncryptedDataInvalid, pkcs11.EncryptedDataLenRange, pkcs11.GeneralError):
                # A wrong tag (SoftHSM2 reports CKR_GENERAL_ERROR for it). If the token
                # still answers, the bytes or the context are at fault, not the token.
                live.generate_random(64)
                return None

        opened = self._session.call("unwrap a subject key", operation)
        if opened is None:
            raise VerificationError("wrapped key does not open with this master key")
        return opened

    def __repr__(self) -> str:
        return f"Pkcs11MasterKey(key_id={self._key_id!r})"


class Pkcs11SigningKey:
    """A :class:`~appliance.audit.checkpoint.SigningKey` in the token: Ed25519
    (CKM_EDDSA) or ECDSA P-256 (CKM_ECDSA), whichever the key under the label is; it
    must be the type ``audit.keys.pkcs11.algorithm`` names (``auto``: either)."""

    def __init__(self, session: TokenSession) -> None:
        self._session = session
        self._label = session.config.signing_key_label
        name = session.config.name

        def read_public(live: pkcs11.Session) -> tuple[str, PublicKey]:
            public = session.find(live, ObjectClass.PUBLIC_KEY, self._label)
            private = self._private(live)
            types = {public[Attribute.KEY_TYPE], private[Attribute.KEY_TYPE]}
            params = bytes(public[Attribute.EC_PARAMS])
            point = bytes(public[Attribute.EC_POINT])
            if types == {pkcs11.KeyType.EC_EDWARDS}:
                if params not in (ED25519_PARAMS, _ED25519_NAMED):
                    raise ConfigurationError(
                        f"the signing key {self._label!r} on {name} is not on curve Ed25519"
                    )
                return "ed25519", Ed25519PublicKey.from_public_bytes(ed25519_point(point))
            if types == {pkcs11.KeyType.EC}:
                if params != P256_PARAMS:
                    raise ConfigurationError(
                        f"the signing key {self._label!r} on {name} is ECDSA but not on P-256"
                    )
                return "ecdsa-p256", p256_point(point)
            raise ConfigurationError(
                f"the signing key {self._label!r} on {name} is neither Ed25519 nor ECDSA P-256"
            )

        self.algorithm, self._public = session.call("read the signing key", read_public)
        wanted = session.config.algorithm
        if wanted not in ("auto", self.algorithm):
            raise ConfigurationError(
                f"the signing key {self._label!r} on {name} is {self.algorithm}, but "
                f"audit.keys.pkcs11.algorithm is {wanted}"
            )
        mechanism_name, self._mechanism = SIGNING_MECHANISMS[self.algorithm]
        session.require(mechanism_name, self._mechanism, f"its {self.algorithm} signing key")
        # The private and public objects under this label must be one pair.
        try:
            check_signature(self._public, self.sign(_SELF_TEST), _SELF_TEST)
        except InvalidSignature as exc:
            raise ConfigurationError(
                f"the private and public keys labelled {self._label!r} on {name} are not a pair"
            ) from exc

    def _private(self, live: pkcs11.Session) -> SignMixin:
        key = self._session.find(live, ObjectClass.PRIVATE_KEY, self._label)
        if not isinstance(key, SignMixin):
            raise ConfigurationError(f"the signing key {self._label!r} lacks CKA_SIGN")
        return key

    def sign(self, data: bytes) -> bytes:
        if self.algorithm == "ed25519":
            return bytes(
                self._session.call(
                    "sign", lambda live: self._private(live).sign(data, mechanism=Mechanism.EDDSA)
                )
            )
        digest = hashlib.sha256(data).digest()
        raw = bytes(
            self._session.call(
                "sign", lambda live: self._private(live).sign(digest, mechanism=Mechanism.ECDSA)
            )
        )
        # PKCS#11 answers r || s, each as long as the order (32 bytes for P-256);
        # signed-note type 0x02 carries the ASN.1 DER form (Go's ecdsa.VerifyASN1).
        if len(raw) != 64:
            raise OSError(f"{self._session.config.name} answered a {len(raw)}-byte ECDSA signature")
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        return encode_dss_signature(r, s)

    def public_key(self) -> PublicKey:
        return self._public

    def __repr__(self) -> str:
        return f"Pkcs11SigningKey(label={self._label!r}, algorithm={self.algorithm!r})"


@dataclass(frozen=True)
class HsmKeys:
    """Both audit keys on one token session."""

    session: TokenSession
    master_key: Pkcs11MasterKey
    signing_key: Pkcs11SigningKey

    def signer(self, origin: str) -> NoteSigner:
        """The log's note signer: named ``origin``, its key in the token."""
        return NoteSigner(origin, self.signing_key)

    def verifier(self, origin: str) -> NoteVerifier:
        return self.signer(origin).verifier()

    def close(self) -> None:
        self.session.close()


def open_hsm_keys(config: TokenConfig) -> HsmKeys:
    """Log in to the token and find both keys; ConfigurationError naming what is wrong."""
    session = TokenSession(config).open()
    try:
        return HsmKeys(session, Pkcs11MasterKey(session), Pkcs11SigningKey(session))
    except BaseException:
        session.close()
        raise
