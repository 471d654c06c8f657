"""``redis+sentinel://`` URLs: parsing, and a client and ``oibus doctor`` reaching a
primary through a real sentinel (the embedded engine started in sentinel mode)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from oibus import Client
from oibus.bus.errors import ConfigurationError
from oibus.bus.urls import SentinelTarget, parse_sentinel_url
from oibus.cli import main
from oibus.embedded import EmbeddedServer, find_engine, free_port


def test_parse() -> None:
    assert parse_sentinel_url("redis+sentinel://a:1,b/svc/3?sentinel_password=s") == (
        SentinelTarget(
            sentinels=[("a", 1), ("b", 26379)], service="svc", db=3, sentinel_password="s"
        )
    )
    found = parse_sentinel_url("redis+sentinel://u:p%40ss@h:5/svc")
    assert (found.username, found.password, found.db) == ("u", "p@ss", 0)
    assert parse_sentinel_url("redis+sentinel://:pw@h/svc").password == "pw"
    for bad in ("redis+sentinel://h:5", "redis+sentinel://h:x/s", "redis+sentinel://h/s/x",
                "redis+sentinel://h/s/1/2", "redis://h/s"):  # fmt: skip
        with pytest.raises(ConfigurationError):
            parse_sentinel_url(bad)


@pytest.fixture(scope="module")
def sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("sentinel")
    primary = EmbeddedServer(root / "primary", appendonly=False)
    primary.start()
    port = free_port()
    conf = Path(root / "sentinel.conf")
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {root}\n"
        f"sentinel monitor main 127.0.0.1 {primary.url.rsplit(':', 1)[1].split('/')[0]} 1\n"
    )
    proc = subprocess.Popen(
        [find_engine().path, str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ask = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if ask.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "main"):
                    break
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        ask.close()
        yield f"redis+sentinel://127.0.0.1:{port}/main/0"
    finally:
        proc.kill()
        proc.wait()
        primary.stop()


@pytest.mark.real
def test_client_and_doctor_through_a_sentinel(sentinel_url: str, namespace: str) -> None:
    with Client(sentinel_url, namespace=namespace) as client:
        intent = client.create_intent("through a sentinel")
        assert client.get_intent(intent.id).title == "through a sentinel"
    result = CliRunner().invoke(
        main, ["doctor", "--json", "--redis-url", sentinel_url, "--namespace", namespace]
    )
    facts = json.loads(result.stdout)["facts"]
    assert facts["mode"] == "sentinel"
    assert facts["nodes"][0]["role"] == "master"
    assert facts["nodes"][0]["address"].startswith("127.0.0.1:")
