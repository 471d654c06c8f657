"""mypy --strict over the one ``oibus`` package as it is installed, from the folders it is
built from.

The package is assembled by setuptools' ``package-dir`` (``oibus.bus`` is ``bus/``, ...);
mypy maps files to modules by their place on disk and cannot read that table, so it would
see ``bus/`` as a top-level ``bus`` and find no ``oibus.bus``. This names every file with
its module from the same table in ``pyproject.toml`` and hands mypy the list, so errors
point at the real files and the options stay in ``[tool.mypy]``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Each mapped package and its folder, from ``[tool.setuptools.package-dir]``."""
    table = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    return {package: pyproject.parent / folder for package, folder in table.items()}


def sources(root: Path = ROOT) -> list[BuildSource]:
    """Every ``.py`` file of every mapped package, named as it is imported."""
    mapped = package_dirs(root / "pyproject.toml")
    folders = {folder.resolve(): package for package, folder in mapped.items()}
    found = []
    for package, folder in sorted(mapped.items()):
        for path in sorted(folder.rglob("*.py")):
            owner = next(p for p in [path.parent, *path.parents] if p.resolve() in folders)
            if folders[owner.resolve()] != package:
                continue  # a folder mapped on its own (oibus/ holds none, but keep it exact)
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(BuildSource(str(path.relative_to(root)), ".".join([package, *parts])))
    return found


def main(argv: list[str]) -> int:
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), *argv, "-c", ""])
    try:
        result = build.build(sources(), options)
    except CompileError as exc:
        print(*exc.messages, sep="\n")
        return 2
    for line in result.errors:
        print(line)
    files = len({s.path for s in sources()})
    if result.errors:
        count = sum(": error:" in line for line in result.errors)
        print(f"Found {count} errors (checked {files} source files)")
        return 1
    print(f"Success: no issues found in {files} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
