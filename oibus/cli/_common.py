"""What every admin command shares: where the bus is, how errors end a command, and how
results are printed (text for people, ``--json`` for scripts).

Exit codes are part of the interface, so scripts can branch on them without parsing text:
0 done; 1 the command ran and found something wrong (an unsafe ``doctor`` finding, no live
daemon); 2 bad input; 3 no such thing; 4 a conflict (a stale version, someone else's
lease, a move the lifecycle refuses); 5 Redis could not be reached or did not answer."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio
import click
import msgspec
from redis import exceptions as rex

from oibus.bus import errors
from oibus.bus.keyspace import DEFAULT_NAMESPACE
from oibus.sdk import AsyncClient, Client
from oibus.sdk._errors import translate
from oibus.sdk.locate import resolve_url

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FOUND_PROBLEMS = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNREACHABLE = 5


def exit_code(exc: errors.OpenIntentError) -> int:
    if isinstance(exc, errors.ValidationError):
        return EXIT_BAD_INPUT
    if isinstance(exc, errors.NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(
        exc, errors.ConflictError | errors.InvalidTransitionError | errors.IntentClosedError
    ):
        return EXIT_CONFLICT
    if isinstance(exc, errors.BusConnectionError | errors.BusTimeoutError):
        return EXIT_UNREACHABLE
    if isinstance(exc, errors.ConfigurationError):
        return EXIT_BAD_INPUT
    return EXIT_FOUND_PROBLEMS


class CliError(errors.OpenIntentError):
    """One line on stderr and a meaningful exit status: an operator reads the line, a
    script reads the status; nobody reads a traceback."""

    code = "CLI"

    def __init__(self, message: str, exit_status: int = EXIT_FOUND_PROBLEMS) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_status = exit_status


def failed(exc: errors.OpenIntentError) -> CliError:
    return CliError(exc.message or str(exc), exit_code(exc))


def _as_failure(exc: Exception) -> CliError | None:
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, errors.OpenIntentError):
        return failed(exc)
    if isinstance(exc, rex.RedisError):
        return failed(translate(exc))
    if isinstance(exc, OSError):  # a socket error outside redis-py's own wrapping
        return CliError(f"cannot reach Redis: {exc}", EXIT_UNREACHABLE)
    return None


def _reader_left(ctx: click.Context) -> None:
    """The reader of our output went away (``oibus stats | head -1``): that is the
    reader's choice, not a failure of the bus. Stop quietly; stdout is pointed at
    /dev/null so the interpreter's last flush cannot complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    ctx.exit(0)


class Command(click.Command):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _reader_left(ctx)
        except Exception as exc:
            failure = _as_failure(exc)
            if failure is None:
                raise
            click.echo(f"error: {failure.message}", err=True)
            ctx.exit(failure.exit_status)


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups are of this class too


class Target(msgspec.Struct, frozen=True):
    """The bus a command works on, and how it should answer."""

    url: str
    namespace: str
    as_json: bool

    def client(self) -> Client:
        return Client(self.url, agent_id="oibus-cli", namespace=self.namespace)

    def aclient(self) -> AsyncClient:
        return AsyncClient(self.url, agent_id="oibus-cli", namespace=self.namespace)

    def run(self, fn: Callable[[AsyncClient], Awaitable[R]]) -> R:
        async def go() -> R:
            async with self.aclient() as client:
                return await fn(client)

        return anyio.run(go, backend="asyncio")

    def emit(self, data: Any, text: Callable[[], None]) -> None:
        """``--json``: the data as one JSON document; otherwise the text printer."""
        if self.as_json:
            click.echo(to_json(data))
        else:
            text()


def to_json(data: Any) -> str:
    return msgspec.json.encode(data, enc_hook=_fallback).decode()


def _fallback(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def bus_command(fn: Callable[..., R]) -> Callable[..., R]:
    """Adds ``--redis-url``, ``--namespace`` and ``--json`` and passes a ``Target`` first."""

    @functools.wraps(fn)
    def wrapper(*args: Any, redis_url: str | None, namespace: str, as_json: bool, **kw: Any) -> R:
        target = Target(resolve_url(redis_url), namespace, as_json)
        return fn(target, *args, **kw)

    options = [
        click.option(
            "--redis-url",
            envvar="OIBUS_REDIS_URL",
            help="The Redis to work on (default: a running `oibus up` in ./.oibus, "
            "else redis://127.0.0.1:6379/0).",
        ),
        click.option(
            "--namespace", envvar="OIBUS_NAMESPACE", default=DEFAULT_NAMESPACE, show_default=True
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts."),
    ]
    for option in options:
        wrapper = option(wrapper)
    return wrapper


def styled(text: str, **style: Any) -> str:
    """Colour only for a terminal: click strips it from pipes and files itself."""
    return click.style(text, **style)


STATUS_COLOURS = {
    "draft": "white",
    "active": "cyan",
    "blocked": "yellow",
    "completed": "green",
    "abandoned": "red",
    "failed": "red",
}


def status_text(status: str) -> str:
    return styled(status, fg=STATUS_COLOURS.get(status, "white"))


_UNSAFE = re.compile(
    "[\x00-\x1a\x1c-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\x1b(?!\\[[0-9;]*m)"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def printable(text: str) -> str:
    """Stored text as one line a terminal shows as written: a newline, a carriage return,
    a cursor or erase sequence, a line separator or a bidi override in a title would
    otherwise forge or hide lines of the output (``\\n``, ``\\x1b`` and so on instead). The
    colour sequences ``styled`` makes stay."""
    return _UNSAFE.sub(_escaped, text)


def say(text: str) -> None:
    """``click.echo`` for a line that holds stored text (see ``printable``)."""
    click.echo(printable(text))


def table(rows: list[list[str]], header: list[str]) -> None:
    """Plain aligned columns (widths from the unstyled text); every cell printable."""
    if not rows:
        return
    rows = [[printable(c) for c in r] for r in rows]
    plain = [[click.unstyle(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in plain) for i in range(len(header))]
    for n, row in enumerate([header, *rows]):
        cells = [c + " " * (w - len(p)) for c, p, w in zip(row, plain[n], widths, strict=True)]
        line = "  ".join(cells).rstrip()
        click.echo(styled(line, bold=True) if n == 0 else line)


def listing(
    rows: list[list[str]], header: list[str], empty: str | None, cursor: str | None = None
) -> None:
    """A page as a table: ``empty`` when there is nothing, and how to ask for more."""
    if not rows and empty is not None:
        click.echo(empty)
    table(rows, header)
    if cursor:
        click.echo(f"more: --cursor {cursor}")
