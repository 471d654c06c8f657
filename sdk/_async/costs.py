"""Costs on the async client (filled in by its capability)."""

from __future__ import annotations

from .base import AsyncClientBase


class AsyncCostsMixin(AsyncClientBase):
    pass
