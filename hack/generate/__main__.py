"""Write every generated file, or with --check list the stale ones.

Usage: python3 -m hack.generate [--check]   (`make generate` runs it)

Each non-underscore module of this package is a generator: its
outputs(root) returns the complete wanted text of every file it owns.
"""

import importlib
import pkgutil
import sys
from pathlib import Path

import hack.generate

ROOT = Path(__file__).resolve().parents[2]


def wanted(root: Path) -> dict[Path, str]:
    """The text every generator wants, by file, for the repository at ROOT."""
    files: dict[Path, str] = {}
    for module in pkgutil.iter_modules(hack.generate.__path__):
        if module.name.startswith("_"):
            continue
        generator = importlib.import_module(f"hack.generate.{module.name}")
        files.update(generator.outputs(root))
    return files


def stale(root: Path, files: dict[Path, str]) -> list[Path]:
    """The files whose text on disk differs from what is wanted."""
    return [
        path
        for path, text in files.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str], root: Path = ROOT) -> int:
    """Write the stale files, or with --check name them and fail."""
    if argv not in ([], ["--check"]):
        print("usage: python3 -m hack.generate [--check]", file=sys.stderr)
        return 2
    files = wanted(root)
    changed = stale(root, files)
    if argv == ["--check"]:
        for path in changed:
            print(f"{path.relative_to(root)} is stale: run `make generate`", file=sys.stderr)
        return 1 if changed else 0
    for path in changed:
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
