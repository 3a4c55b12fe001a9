"""Validation building blocks shared by every request model (runbook section 5).

Strings are trimmed, control characters rejected, every field length-limited and
unknown fields refused.
"""

from __future__ import annotations

import re
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from service.security.breached import is_common

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MIN_PASSWORD = 12
MAX_PASSWORD = 128


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def normalise_email(value: str) -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return result.normalized.lower()


def password_problem(value: str) -> str | None:
    if len(value) < MIN_PASSWORD:
        return f"must be at least {MIN_PASSWORD} characters"
    if len(value) > MAX_PASSWORD:
        return f"must be at most {MAX_PASSWORD} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    if is_common(value):
        return "is one of the passwords most often found in breaches; choose another"
    return None


def _valid_password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalise_email)]
# Passwords are not trimmed: a space is a legitimate character.
Password = Annotated[
    str,
    StringConstraints(strip_whitespace=False, max_length=MAX_PASSWORD),
    AfterValidator(_valid_password),
]
Sku = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
]
