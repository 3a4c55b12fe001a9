"""argon2id password hashing."""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()
# Hashing takes ~0.1 s of CPU and 64 MiB: it runs off the event loop, on a pool sized to the
# cores so a burst of logins queues instead of multiplying memory use.
_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="argon2")


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the account does not exist, so timing does not reveal which
    emails are registered. Made on first use, with the hasher's own parameters, rather than
    at import: every process that imports the service (each replica, each migration and admin
    one-off) would otherwise spend a hash's 0.1 s of CPU before doing anything."""
    return hasher.hash("timing-equaliser-not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        hashed = password_hash or _dummy_hash(_hasher)
        return _hasher.verify(hashed, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        _POOL, verify_password, password_hash, password
    )
