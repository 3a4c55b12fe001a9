"""Passwords known from breaches (ASVS 2.1.7), checked without a network.

Two lists. The bundled one (`common_passwords.txt`, loaded once per process) holds the most
common leaked passwords long enough to pass the length policy; it is small, and refuses only
the obvious. For a real check, `BREACHED_PASSWORDS_FILE` names a copy of Have I Been Pwned's
Pwned Passwords list in its downloadable form: one `SHA1:count` line per password, upper-case
hex, sorted by hash (what `haveibeenpwned-downloader` writes). It is searched in place by
bisection over a memory map, so a 40 GB file costs a few page reads per check and no memory.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
from pathlib import Path

COMMON_LIST = Path(__file__).with_name("common_passwords.txt")
_HASH_LEN = 40


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()


class BreachedPasswords:
    """A sorted `SHA1:count` file, searched by bisection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            first = handle.readline().strip()
        if len(first) < _HASH_LEN or not _is_hex(first[:_HASH_LEN]):
            raise ValueError(
                f"{path} does not start with a SHA-1 line (`<40 hex digits>:<count>`); "
                "download Pwned Passwords in SHA-1 form, sorted by hash"
            )

    def seen(self, password: str) -> bool:
        wanted = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
        with (
            self.path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            return _bisect(data, wanted.encode())


def _is_hex(value: bytes) -> bool:
    return all(c in b"0123456789ABCDEFabcdef" for c in value)


def _line_at(data: mmap.mmap, offset: int) -> tuple[bytes, int]:
    """The first whole line starting at or after `offset`, and where the next one starts."""
    if offset > 0:
        newline = data.find(b"\n", offset - 1)
        if newline < 0:
            return b"", len(data)
        offset = newline + 1
    end = data.find(b"\n", offset)
    end = len(data) if end < 0 else end
    return data[offset:end].strip(), end + 1


def _bisect(data: mmap.mmap, wanted: bytes) -> bool:
    low, high = 0, len(data)
    while low < high:
        middle = (low + high) // 2
        line, after = _line_at(data, middle)
        if not line:
            high = middle
            continue
        found = line[:_HASH_LEN].upper()
        if found == wanted:
            return True
        if found < wanted:
            low = after
        else:
            high = middle
    return False
