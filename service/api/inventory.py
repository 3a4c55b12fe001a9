"""inventory routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/inventory", tags=["inventory"])
