"""The layout of tests/: a test module imports its helpers from support modules (conftest.py,
tests/support/, a <topic>lib.py next to its users), never from another test module, which
would couple the two files and make pytest import a test module as a library."""

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# (importing file, imported test module) allowed for now: none; this list only shrinks.
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    """PATH's dotted name as our imports spell it (tests.pipeline.pipelinelib)."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(path: Path) -> set[str]:
    """Every module PATH imports, anywhere in the file, relative imports resolved; for `from
    PACKAGE import NAME`, also PACKAGE.NAME (NAME may be a module)."""
    package = module_name(path).rsplit(".", 1)[0].split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def imports_of_test_modules() -> set[tuple[str, str]]:
    """(importing file, imported test module) for every import of a test module in tests/."""
    return {
        (str(path.relative_to(ROOT)), module)
        for path in sorted(TESTS.rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_")
    }


def test_no_test_module_imports_another() -> None:
    found = imports_of_test_modules()
    assert found <= ALLOWED, (
        f"test modules imported as libraries: {sorted(found - ALLOWED)}: move the shared "
        "helpers into a support module (conftest.py, tests/support/, a <topic>lib.py next to "
        "their users) and import them from there"
    )


def test_the_allowed_imports_still_exist() -> None:
    gone = ALLOWED - imports_of_test_modules()
    assert not gone, f"allowed but gone: {sorted(gone)}: drop them from ALLOWED"


def test_helper_modules_explain_their_failed_asserts() -> None:
    plain = []
    for path in sorted(TESTS.rglob("*lib.py")):
        module = importlib.import_module(module_name(path))
        if type(module.__loader__).__name__ != "AssertionRewritingHook":
            plain.append(module.__name__)
    assert not plain, f"{plain}: add them to pytest.register_assert_rewrite in tests/conftest.py"
