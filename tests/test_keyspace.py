"""Key names and slots: an id leads to its keys, groups colocate, slots match Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace, check_id, encode_segment, group_of, key_slot
from oibus.embedded import EmbeddedServer, free_port


def test_known_cluster_slots() -> None:
    # published CLUSTER KEYSLOT values
    assert key_slot("foo") == 12182
    assert key_slot("somekey") == 11058
    assert key_slot("hello") == 866
    assert key_slot("{foo}bar") == key_slot("foo")
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") != key_slot("bar")  # an empty tag hashes the whole key


def test_slots_agree_with_a_cluster_enabled_engine(tmp_path: Path) -> None:
    # an explicit cluster bus port: the default (port + 10000) overflows for high ports
    args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
    server = EmbeddedServer(tmp_path, appendonly=False, extra_args=args)
    with server:
        conn = redis.Redis.from_url(server.url, decode_responses=True)
        ks = Keyspace("oi", 16)
        keys = ["foo", "a{b}{c}", "x{}y", ks.intent("abc"), ks.bus(3), ks.index_creator(1, "a:b")]
        for key in keys:
            assert key_slot(key) == conn.execute_command("CLUSTER", "KEYSLOT", key), key
        conn.close()


def test_an_intents_keys_share_one_slot() -> None:
    ks = Keyspace("oi", 16)
    for intent_id in ["abc", "g.1", "g.2", "0f8c-uuid"]:
        keys = [
            ks.intent(intent_id),
            ks.state(intent_id),
            ks.events(intent_id),
            ks.bus(ks.partition(intent_id)),
            *ks.status_indexes(ks.partition(intent_id)),
        ]
        assert len({key_slot(k) for k in keys}) == 1


def test_groups_colocate() -> None:
    ks = Keyspace("oi", 64)
    assert group_of("g.child.x") == "g"
    assert ks.partition("g") == ks.partition("g.a") == ks.partition("g.b.c")


def test_partitions_spread() -> None:
    ks = Keyspace("oi", 16)
    import uuid

    used = {ks.partition(str(uuid.uuid4())) for _ in range(2000)}
    assert used == set(range(16))


@pytest.mark.parametrize("bad", ["", ".x", "a b", "a{b}", "a:b", "x" * 129, "é"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_id(bad)


@pytest.mark.parametrize(("ns", "parts"), [("bad ns", 16), ("ok", 0), ("ok", 2000)])
def test_bad_keyspace(ns: str, parts: int) -> None:
    with pytest.raises(ValidationError):
        Keyspace(ns, parts)


def test_free_text_in_keys_is_escaped() -> None:
    assert encode_segment("a:b{c}%") == "a%3Ab%7Bc%7D%25"
    assert Keyspace("n", 1).index_creator(0, "x:y") != Keyspace("n", 1).index_creator(0, "x%3Ay")
