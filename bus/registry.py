"""The script registry: built from the ``lua/`` directory listing, never typed out.

Each ``<name>.lua`` is one operation. ``-- @include "x"`` pulls in ``lua/includes/x.lua``;
each include is expanded once per script however often it is asked for, and a cycle is an
error naming the chain. Every script opens with a header block (purpose, KEYS, ARGV,
Returns, Errors, Events) that is parsed here, so the key counts the SDK sends and the codes
it translates are checked against what the script says of itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from oibus.bus.errors import ConfigurationError

_INCLUDE = re.compile(r'^-- @include "([a-z_][a-z0-9_]*)"\s*$', re.MULTILINE)
_HEADER = re.compile(r"\A--\[\[\n(.*?)\n\]\]", re.DOTALL)
_SLOT = re.compile(r"^\s+\[(\d+)(\+?)\]\s+(\w+)")
_SECTIONS = ("Invariants:", "KEYS:", "ARGV:", "Returns:", "Errors:", "Events:")


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    purpose: str
    keys: tuple[str, ...]
    variadic_keys: bool
    argv: tuple[str, ...]
    errors: tuple[str, ...]
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    header: Header


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(title))
    except StopIteration:
        raise ConfigurationError(f"script header has no {title} section") from None
    out = [lines[start][len(title) :].strip()] if lines[start][len(title) :].strip() else []
    for line in lines[start + 1 :]:
        if any(line.startswith(s) for s in _SECTIONS):
            break
        out.append(line)
    return out


def _names(lines: list[str]) -> list[str]:
    return [
        part.strip()
        for line in lines
        for part in line.split(",")
        if part.strip() and part.strip() != "(none)"
    ]


def parse_header(name: str, source: str) -> Header:
    match = _HEADER.match(source)
    if match is None:
        raise ConfigurationError(f"{name}.lua does not open with a --[[ header ]] block")
    text = match.group(1)
    first = text.splitlines()[0]
    if not first.startswith(f"{name}: "):
        raise ConfigurationError(f"{name}.lua's header must start with '{name}: <purpose>'")
    slots: dict[str, list[tuple[int, bool, str]]] = {}
    for title in ("KEYS:", "ARGV:"):
        found = [m for m in (_SLOT.match(line) for line in _section(text, title)) if m]
        slots[title] = [(int(m.group(1)), m.group(2) == "+", m.group(3)) for m in found]
        numbers = [n for n, _, _ in slots[title]]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ConfigurationError(f"{name}.lua: {title} entries must be numbered 1..n")
    keys = slots["KEYS:"]
    return Header(
        name=name,
        purpose=first[len(name) + 2 :],
        keys=tuple(k for _, _, k in keys),
        variadic_keys=bool(keys) and keys[-1][1],
        argv=tuple(a for _, _, a in slots["ARGV:"]),
        errors=tuple(_names(_section(text, "Errors:"))),
        events=tuple(_names(_section(text, "Events:"))),
    )


def expand(source: str, includes: Mapping[str, str], chain: tuple[str, ...] = ()) -> str:
    """Replace include lines with the included text, depth first, each include once."""
    seen: set[str] = set()

    def walk(text: str, path: tuple[str, ...]) -> str:
        def repl(match: re.Match[str]) -> str:
            inc = match.group(1)
            if inc in path:
                raise ConfigurationError("include cycle: " + " -> ".join((*path, inc)))
            if inc not in includes:
                raise ConfigurationError(
                    f"{' -> '.join(path)} includes {inc!r}, which is not in lua/includes/"
                )
            if inc in seen:
                return f"-- ({inc} already included)"
            seen.add(inc)
            return walk(includes[inc], (*path, inc))

        return _INCLUDE.sub(repl, text)

    return walk(source, chain)


class Registry(Mapping[str, Script]):
    """Name → Script for every operation script in a directory."""

    def __init__(self, scripts: Mapping[str, Script]) -> None:
        self._scripts = dict(scripts)

    def __getitem__(self, name: str) -> Script:
        return self._scripts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._scripts)

    def __len__(self) -> int:
        return len(self._scripts)

    @classmethod
    def from_directory(cls, root: Traversable) -> Registry:
        inc_dir = root / "includes"
        includes = {
            p.name[:-4]: p.read_text(encoding="utf-8")
            for p in inc_dir.iterdir()
            if p.name.endswith(".lua")
        }
        scripts = {}
        for path in sorted(root.iterdir(), key=lambda p: p.name):
            if not path.name.endswith(".lua"):
                continue
            name = path.name[:-4]
            raw = path.read_text(encoding="utf-8")
            header = parse_header(name, raw)
            source = expand(raw, includes, (name,))
            sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            scripts[name] = Script(name=name, source=source, sha=sha, header=header)
        return cls(scripts)


_default: Registry | None = None


def default_registry() -> Registry:
    """The scripts shipped in the package (``oibus/lua``), loaded once per process."""
    global _default  # noqa: PLW0603 - a process-wide cache of immutable data
    if _default is None:
        _default = Registry.from_directory(resources.files("oibus.lua"))
    return _default
