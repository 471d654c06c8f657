"""The SDK: ``Client`` and ``AsyncClient``. The async code is the source; the sync twin in
``_sync/`` is generated from it by ``scripts/unasync.py`` (CI fails on any drift)."""

from oibus.sdk._async.client import AsyncClient
from oibus.sdk._sync.client import Client

__all__ = ["AsyncClient", "Client"]
