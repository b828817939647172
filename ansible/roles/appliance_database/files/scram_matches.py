"""Exit 0 when the password matches the SCRAM-SHA-256 verifier (pg_authid.rolpassword),
1 otherwise (md5, no password, or another password). Both come on stdin, never in argv:
the verifier on the first line, the password after it.
RFC 5802 / RFC 7677: StoredKey = H(HMAC(SaltedPassword, "Client Key"))."""

import base64
import hashlib
import hmac
import sys

verifier, _, password = sys.stdin.read().partition("\n")
try:
    scheme, params, keys = verifier.strip().split("$")
    iterations, salt = params.split(":")
    stored_key = keys.split(":")[0]
except ValueError:
    sys.exit(1)
if scheme != "SCRAM-SHA-256":
    sys.exit(1)
salted = hashlib.pbkdf2_hmac(
    "sha256", password.encode(), base64.b64decode(salt), int(iterations)
)
client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
computed = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
sys.exit(0 if hmac.compare_digest(computed, stored_key) else 1)
