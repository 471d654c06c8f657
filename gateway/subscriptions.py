"""Routes of the HTTP server: subscriptions (being written; see gateway/intents.py)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
