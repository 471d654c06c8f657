"""The application as uvicorn imports it in each worker process (``--workers N``): its
settings come from the environment ``oibus serve`` sets, as every oibus command reads
them (``OIBUS_REDIS_URL``, ``OIBUS_NAMESPACE``, ``OIBUS_PARTITIONS``)."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from oibus.bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS
from oibus.gateway.app import GatewayConfig, create_app
from oibus.sdk.locate import resolve_url


def app_from_env() -> Starlette:
    return create_app(
        GatewayConfig(
            redis_url=resolve_url(None),
            namespace=os.environ.get("OIBUS_NAMESPACE") or DEFAULT_NAMESPACE,
            partitions=int(os.environ.get("OIBUS_PARTITIONS") or DEFAULT_PARTITIONS),
        )
    )
