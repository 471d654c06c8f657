"""Routes of the HTTP server: records (being written; see gateway/intents.py for the pattern)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
