"""Lua helpers tested on their own, on every backend (Lua 5.1 in Redis/Valkey, lupa in
fakeredis): the things the scripts compute rather than store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from importlib import resources

import redis

from oibus.bus.registry import expand

INCLUDES = {
    p.name[:-4]: p.read_text()
    for p in (resources.files("oibus.lua") / "includes").iterdir()
    if p.name.endswith(".lua")
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _eval(conn: redis.Redis, body: str, *args: object) -> list[str]:
    return list(conn.eval(expand(body, INCLUDES, ("test",)), 0, *args))


def test_iso_time_matches_python(raw_redis: redis.Redis) -> None:
    rng = random.Random(7)
    samples = [0, 86_399_999_999, 951_782_400_000_000, 4_107_542_399_999_999]  # 2000-02-29..
    samples += [rng.randrange(0, 4_102_444_800_000_000) for _ in range(300)]
    body = (
        '-- @include "iso_time"\nlocal o = {}\n'
        "for i = 1, #ARGV do o[i] = iso_time(tonumber(ARGV[i])) end\nreturn o"
    )
    got = _eval(raw_redis, body, *samples)
    expected = [
        (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for us in samples
    ]
    assert got == expected


def test_json_validity_check(raw_redis: redis.Redis) -> None:
    body = (
        '-- @include "json_text"\nlocal o = {}\n'
        "for i = 1, #ARGV do o[i] = js_valid(ARGV[i]) and 1 or 0 end\nreturn o"
    )
    good = [
        '{"a":[1,2.5e-3,-0,true,false,null,"x\\"y"]}',
        "[]",
        '"s"',
        "1",
        '{"nan":"NaN"}',
        ' { "a" : [ ] } ',
        '"true false"',
        "-0.5E+10",
        "[0,10,1e5,-1.25e-3]",
        "-5",
        "0",
        "-0",
        "null",
        '"plain"',
        '"\u00fc as \xfc"',
        '"a\\nb"',
    ]
    bad = [
        "NaN",
        "Infinity",
        "0x10",
        "{",
        "[1,]",
        "",
        "tru",
        '{"a":nan}',
        "'x'",
        "+1",
        "01",
        ".5",
        "1.",
        "[1e]",
        "-",
        "1e+",
        "[--1]",
        "-01",
        "00",
        '"a\x01b"',
        '"a\\"',
    ]
    assert _eval(raw_redis, body, *good) == [1] * len(good)
    assert _eval(raw_redis, body, *bad) == [0] * len(bad)
