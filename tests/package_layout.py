"""The package as ``pyproject.toml`` assembles it: which folder each subpackage comes
from, its modules, and the files a wheel of it must hold. Shared by the layout test and
the Dockerfile's build-context test, so both judge a build by the same list."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGE_DIRS: dict[str, str] = SETUPTOOLS["package-dir"]


def module_files() -> Iterator[tuple[str, Path]]:
    """Every source file of the package, with the module name it is imported under."""
    folders = {(ROOT / folder).resolve(): package for package, folder in PACKAGE_DIRS.items()}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            owner = next(p for p in [path.parent, *path.parents] if p.resolve() in folders)
            if folders[owner.resolve()] != package:
                continue
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def lua_scripts() -> list[str]:
    """Every Lua file, as a path inside the ``oibus.lua`` package."""
    return sorted(p.relative_to(ROOT / "lua").as_posix() for p in (ROOT / "lua").rglob("*.lua"))


def wheel_files() -> set[str]:
    """What a wheel must hold besides its metadata: every module at its package path,
    every Lua script, ``py.typed``."""
    names = set()
    for name, path in module_files():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        names.add("/".join([*package.split("."), path.name]))
    names.update(f"oibus/lua/{lua}" for lua in lua_scripts())
    names.add("oibus/py.typed")
    names.update(f"oibus/gateway/ui/{path}" for path in ui_assets())
    return names


def ui_assets() -> list[str]:
    """The dashboard's templates and static files (package data of ``oibus.gateway.ui``),
    relative to gateway/ui/."""
    ui = ROOT / "gateway" / "ui"
    return sorted(
        p.relative_to(ui).as_posix()
        for folder in ("templates", "static")
        for p in (ui / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
