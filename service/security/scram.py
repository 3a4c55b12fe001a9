"""SCRAM-SHA-256 verifiers for PostgreSQL role passwords (RFC 5802 with RFC 7677's hash).

`CREATE ROLE ... PASSWORD 'clear'` puts the clear password in the statement, so into the
server's log under `log_statement=all` or an error, and into pg_stat_statements. Given a
verifier in the format PostgreSQL stores, the server keeps it as it is: the role logs in with
the clear password, which never left this process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

# PostgreSQL's own defaults (scram_iterations, and the salt length it generates).
ITERATIONS = 4096
SALT_BYTES = 16

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points
)


def saslprep(password: str) -> str:
    """The password as PostgreSQL normalises it before hashing (RFC 4013 SASLprep).

    Like the server, an ASCII password is used as it is, and so is one that SASLprep would
    reject (prohibited characters, bad bidirectional text): the server then hashes the raw
    bytes, and so must the verifier.
    """
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in password
        if not stringprep.in_table_b1(char)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    if not normal or any(check(char) for char in normal for check in _PROHIBITED):
        return password
    right_to_left = [stringprep.in_table_d1(char) for char in normal]
    if any(right_to_left) and (
        not (right_to_left[0] and right_to_left[-1])
        or any(stringprep.in_table_d2(char) for char in normal)
    ):
        return password
    return normal


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64, as in pg_authid."""
    if not password:
        raise ValueError("a role password must not be empty")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
