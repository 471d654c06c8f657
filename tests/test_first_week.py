"""Regressions of issue 15 ("the first week of a new user and an operator"), one test or
group per defect, each with the defect it pins in its docstring. Defects whose natural
home is another file are tested there (the retention race in test_daemon.py, the agent
stop in test_agents.py, the superseded lease in test_leases.py)."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions as rex
from click.testing import CliRunner

from oibus import AsyncClient, BusConnectionError, Client, ConfigurationError, ValidationError
from oibus.cli import main as cli_main
from oibus.daemon.webhooks import WebhookConfig, WebhookFanout
from oibus.sdk._errors import translate
from oibus.sdk.locate import DataDirLock, resolve_url, running_url

NOT_JSON: list[tuple[str, Any, str]] = [
    ("nan", math.nan, "nan is not a JSON number"),
    ("inf", math.inf, "inf is not a JSON number"),
    ("-inf", -math.inf, "-inf is not a JSON number"),
    ("bytes", b"raw", "bytes is not a JSON value"),
    ("set", {1, 2}, "set is not a JSON value"),
    ("frozenset", frozenset({1}), "frozenset is not a JSON value"),
    ("naive datetime", datetime.datetime(2026, 1, 1), "datetime is not a JSON value"),
    ("decimal nan", decimal.Decimal("NaN"), "Decimal is not a JSON value"),
    ("decimal", decimal.Decimal("1.5"), "Decimal is not a JSON value"),
    ("int key", {1: "a"}, "int key (JSON object keys are strings)"),
    ("huge int", 10**400, "integer out of the 64-bit range"),
    ("nested nan", {"a": [1, {"b": math.nan}]}, "nan is not a JSON number"),
]


@pytest.mark.parametrize(
    ("value", "why"), [(v, w) for _, v, w in NOT_JSON], ids=[n for n, _, _ in NOT_JSON]
)
def test_values_that_are_not_json_are_refused_not_converted(
    client: Client, value: Any, why: str
) -> None:
    """15.5: NaN and inf became null, bytes base64 text, sets lists, datetimes and
    Decimals strings. Each is refused with the field named, and nothing is written."""
    intent = client.create_intent("t", state={"keep": 1})
    before = client.get_events(intent.id)
    calls = [
        ("state", lambda: client.update_state(intent.id, intent.version, {"v": value})),
        (
            "patches[0]",
            lambda: client.patch_state(
                intent.id, intent.version, [{"op": "set", "path": "/v", "value": value}]
            ),
        ),
        ("payload", lambda: client.log_event(intent.id, "comment", {"v": value})),
        ("state", lambda: client.create_intent("u", state={"v": value})),
    ]
    for name, call in calls:
        with pytest.raises(ValidationError, match=why.replace("(", r"\(").replace(")", r"\)")) as e:
            call()
        assert name.split("[")[0] in (e.value.field or ""), (name, e.value.field)
    after = client.get_intent(intent.id)
    assert (after.version, after.state) == (intent.version, {"keep": 1})
    assert client.get_events(intent.id) == before
    assert [i.title for i in client.list_intents(limit=10)] == ["t"]


def test_plain_json_still_round_trips(client: Client) -> None:
    """The refusals above leave every plain JSON value alone, tuples (arrays) and the
    64-bit integer range included."""
    value = {"f": 1.5, "i": -(2**63), "u": 2**63 - 1, "t": (1, "x"), "n": None, "b": True}
    intent = client.create_intent("t", state=value)
    assert intent.state == {**value, "t": [1, "x"]}


def test_messages_say_what_is_wrong(client: Client) -> None:
    """15.8: an integer beyond what JSON readers parse was reported as "not JSON, or
    nests deeper than 64 levels", and a payload nested too deep as "must be a JSON
    object"."""
    intent = client.create_intent("t")
    with pytest.raises(ValidationError, match="integer out of the 64-bit range"):
        client.update_state(intent.id, intent.version, {"big": 10**400})
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(70):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(ValidationError, match="nests deeper than 64 levels"):
        client.log_event(intent.id, "comment", deep)
    with pytest.raises(ValidationError, match="nests deeper than 64 levels"):
        client.update_state(intent.id, intent.version, {"deep": deep})


# -- where is my server (15.3, 15.10, 15.12) ---------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIBUS_")}
    env.update(extra)
    return env


def _up(cwd: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``oibus up --no-daemon`` in ``cwd`` (its data directory is ``cwd/.oibus``), once it
    says it is up; returns the process and what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "oibus", "up", "--no-daemon", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "press Ctrl-C" in line or not line:
            break
    return proc, "".join(lines)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None
    proc.stdout.close()


@pytest.mark.real
def test_one_up_per_data_directory_and_everyone_finds_it(tmp_path: Path) -> None:
    """15.3: a second ``oibus up`` on the same data directory started a second server on
    the same append-only file and, on exit, deleted the first one's URL file. 15.12: the
    clients did not look for a running ``oibus up`` at all."""
    first, said = _up(tmp_path)
    try:
        assert "press Ctrl-C" in said, said
        url = (tmp_path / ".oibus" / "url").read_text().strip()
        second = subprocess.run(
            [sys.executable, "-m", "oibus", "up", "--no-daemon"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert "already running" in second.stderr and url in second.stderr
        assert (tmp_path / ".oibus" / "url").read_text().strip() == url  # untouched
        # a client made with no URL, in that directory, reaches that server
        probe = (
            "from oibus import Client; c = Client(); "
            "print(c.redis.connection_pool.connection_kwargs['port'])"
        )
        found = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=True,
        )
        assert url.endswith(f":{found.stdout.strip()}/0")
        # and so does `oibus daemon --check`, as `oibus doctor` does
        check = subprocess.run(
            [sys.executable, "-m", "oibus", "daemon", "--check"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert check.returncode == 1 and "no live daemon" in check.stdout, check.stderr
    finally:
        _stop(first)
    assert not (tmp_path / ".oibus" / "url").exists()  # its own file, at its own exit


def test_a_url_file_nobody_holds_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL file left by an ``oibus up`` that was killed is not trusted: its lock is gone."""
    (tmp_path / "url").write_text("redis://127.0.0.1:1/0\n")
    monkeypatch.delenv("OIBUS_REDIS_URL", raising=False)
    assert running_url(tmp_path) is None
    assert resolve_url(None, tmp_path) == "redis://127.0.0.1:6379/0"
    claim = DataDirLock(tmp_path)
    claim.acquire()
    try:
        claim.publish("redis://127.0.0.1:7/0")
        assert running_url(tmp_path) == "redis://127.0.0.1:7/0"
        with pytest.raises(
            ConfigurationError, match=r"already running .* at redis://127\.0\.0\.1:7/0"
        ):
            DataDirLock(tmp_path).acquire()
        monkeypatch.setenv("OIBUS_REDIS_URL", "redis://elsewhere:6379/0")
        assert resolve_url(None, tmp_path) == "redis://elsewhere:6379/0"  # the env wins
        assert resolve_url("redis://given:1/0", tmp_path) == "redis://given:1/0"
    finally:
        claim.release()
    assert not (tmp_path / "url").exists()


@pytest.mark.parametrize(
    "url",
    ["http://user:secret@host:1", "localhost:6379", "redis://h:notaport/0", "redis+cluster://h:x"],
)
def test_a_malformed_url_is_a_configuration_error(url: str) -> None:
    """15.10: ``Client("http://...")`` raised a bare ValueError and the CLI printed a
    traceback; the password never appears in the message."""
    with pytest.raises(ConfigurationError) as caught:
        Client(url)
    assert "secret" not in str(caught.value)
    result = CliRunner().invoke(cli_main, ["stats", "--redis-url", url])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "secret" not in result.output


@pytest.mark.real
def test_a_closed_pipe_ends_the_command_quietly(embedded_url: str, namespace: str) -> None:
    """15.10: ``oibus intents list | head -1`` reported "cannot reach Redis: Broken pipe"."""
    with Client(embedded_url, namespace=namespace) as client:
        for n in range(300):
            client.create_intent(f"intent {n}")
    done = subprocess.run(
        f"{shlex.quote(sys.executable)} -m oibus intents list --limit 200 "
        f"--redis-url {embedded_url} --namespace {namespace} | head -1; "
        "echo status=${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "status=0" in done.stdout, done.stdout
    assert done.stderr == ""


# -- one webhook address policy per namespace (15.7) ---------------------------------------
def test_subscribe_refuses_at_once_what_the_policy_refuses(client: Client) -> None:
    """15.7: a URL the daemons would refuse (a private address under the public-only
    policy) was accepted and dead-lettered later, at every delivery. It is refused at
    subscribe now, and nothing is written; a namespace that allows private addresses
    takes it."""
    intent = client.create_intent("t")
    assert client.get_webhook_policy() == "public"
    for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://10.1.2.3/h"]:
        with pytest.raises(ValidationError, match="private, loopback or link-local") as e:
            client.subscribe(intent.id, webhook_url=url)
        assert e.value.field == "webhook_url"
    assert client.get_subscriptions() == []
    assert client.set_webhook_policy(True) == "private"
    sub = client.subscribe(intent.id, webhook_url="http://127.0.0.1:9/hook")
    assert [s.id for s in client.get_subscriptions()] == [sub.id]


@pytest.mark.anyio
async def test_daemons_of_a_namespace_deliver_by_one_policy(aclient: AsyncClient) -> None:
    """15.7: daemons with different address policies shared one queue, so one
    dead-lettered what another would deliver. The first records the namespace's
    policy; one started with another refuses to run, naming the fix."""
    public = WebhookFanout(aclient.redis, aclient.keyspace, consumer="d1", config=WebhookConfig())
    private = WebhookFanout(
        aclient.redis, aclient.keyspace, consumer="d2", config=WebhookConfig(allow_private=True)
    )
    await public.settle_policy()
    await public.settle_policy()  # the same policy again: fine
    with pytest.raises(ConfigurationError, match="oibus subscriptions policy"):
        await private.settle_policy()
    assert await aclient.get_webhook_policy() == "public"


@pytest.mark.real
def test_the_policy_command(embedded_url: str, namespace: str) -> None:
    """``oibus subscriptions policy`` shows and sets it (restart the daemons after)."""
    runner = CliRunner()
    args = ["subscriptions", "policy", "--redis-url", embedded_url, "--namespace", namespace]
    assert runner.invoke(cli_main, args).output == "webhook policy: public\n"
    assert runner.invoke(cli_main, [*args, "--allow-private"]).output == "webhook policy: private\n"
    shown = runner.invoke(cli_main, [*args, "--json"])
    assert json.loads(shown.output) == {"webhook_policy": "private"}
    with Client(embedded_url, namespace=namespace) as client:
        client.subscribe(webhook_url="http://127.0.0.1:9/hook")
        client.redis.delete(*client.redis.keys(f"{{{namespace}}}*"))


# -- stored text on a terminal (15.9) -------------------------------------------------------
def test_titles_are_one_line_and_nul_is_refused(client: Client) -> None:
    """15.9: control characters were accepted in titles (a newline in a title forges a
    line of ``oibus intents list``)."""
    for title in ["two\nlines", "carriage\rreturn", "erase\x1b[2K", "sep\u2028arator"]:
        with pytest.raises(ValidationError, match="one line without control characters"):
            client.create_intent(title)
    with pytest.raises(ValidationError, match="NUL"):
        client.create_intent("t", description="a\x00b")
    assert client.list_intents() == []


@pytest.mark.real
def test_the_cli_prints_stored_text_escaped(embedded_url: str, namespace: str) -> None:
    """15.9: the CLI printed stored text raw. A description may hold several lines; on
    the terminal it stays on its own line, escaped, and so does any control sequence."""
    with Client(embedded_url, namespace=namespace) as client:
        intent = client.create_intent(
            "ok", description="line one\nstatus  FORGED\x1b[2K\u202eevil", state={"k\nx": 1}
        )
    result = CliRunner().invoke(
        cli_main,
        ["intents", "show", intent.id, "--redis-url", embedded_url, "--namespace", namespace],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "description  line one\\nstatus  FORGED\\x1b[2K\\u202eevil" in lines
    assert "  k\\nx = 1" in lines
    assert not any(line.startswith("status  FORGED") for line in lines)
    assert "\x1b[2K" not in result.output and "\u202e" not in result.output


@pytest.mark.parametrize(
    "reply",
    [
        rex.ResponseError("CLUSTERDOWN The cluster is down"),
        rex.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
        rex.ReadOnlyError("You can't write against a read only replica."),
        rex.ResponseError("MASTERDOWN Link with MASTER is down"),
    ],
)
def test_a_server_in_failover_is_unreachable_not_a_script_bug(reply: Exception) -> None:
    """Seen in the failover tier: a write reaching a node while it changed role got
    CLUSTERDOWN and surfaced as a ScriptError ("a bug in a script"). It is a
    BusConnectionError: nothing was done, and the call may be retried."""
    for script in (True, False):
        assert isinstance(translate(reply, script=script), BusConnectionError)
