"""A server at maxmemory (noeviction) refuses writes: the caller gets BusFullError, a
typed error of its own, not a script bug; reads go on working."""

from __future__ import annotations

from pathlib import Path

import pytest

from oibus import BusFullError, Client
from oibus.embedded import EmbeddedServer


@pytest.mark.real
def test_a_full_server_refuses_writes_with_a_typed_error(tmp_path: Path) -> None:
    with (
        EmbeddedServer(tmp_path, appendonly=False) as server,
        Client(server.url, namespace="full") as client,
    ):
        kept = client.create_intent("written before the limit")
        client.redis.config_set("maxmemory", 1)
        client.redis.config_set("maxmemory-policy", "noeviction")
        for write in (
            lambda: client.create_intent("refused"),
            lambda: client.update_state(kept.id, kept.version, {"k": 1}),
            lambda: client.log_event(kept.id, "note"),
        ):
            with pytest.raises(BusFullError, match="maxmemory"):
                write()
        assert client.get_intent(kept.id).version == kept.version
        client.redis.config_set("maxmemory", 0)
        assert client.update_state(kept.id, kept.version, {"k": 1}).version == kept.version + 1
