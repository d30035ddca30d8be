"""app:test:job installs the Dockerfile's own Python packages and the tests' pinned
dependencies, then runs pytest on the app's tests (apk and python3 are stand-ins
that record the calls); and every third-party module those tests import is one
that job installs."""

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.pipeline.conftest import ROOT

RECORDER = """#!/bin/sh
printf '%s %s | PYTHONPATH=%s%s\\n' "$(basename "$0")" "$*" "${PYTHONPATH:-}" \\
    "${PYTEST_ADDOPTS:+ PYTEST_ADDOPTS=$PYTEST_ADDOPTS}" >> "$RECORD"
"""
# This project's own app_tests input, as .gitlab-ci.yml gives it to the component.
APP_TESTS = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())["include"][0]["inputs"][
    "app_tests"
]
DOCKERFILE = """FROM alpine:3.24.2
# hadolint ignore=DL3018
RUN apk add --no-cache \\
        python3~=3.14 \\
        py3-pip \\
        py3-flask~=3.1 \\
        py3-gunicorn~=25.2 \\
    && adduser -S -D -u 10001 app
RUN apk add --no-cache curl
"""


def run_app_test(
    tmp_path: Path, dockerfile: str, requirements: bool = True, app_tests: str = APP_TESTS
) -> tuple[subprocess.CompletedProcess, str]:
    """Run ci/scripts/app-test.sh in BusyBox sh (or dash) next to DOCKERFILE (and, when
    REQUIREMENTS, the project's requirements/app-test.txt) with APP_TESTS."""
    if requirements:
        (tmp_path / "requirements").mkdir()
        shutil.copy(ROOT / "requirements" / "app-test.txt", tmp_path / "requirements")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apk", "python3"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    record = tmp_path / "record"
    record.write_text("")
    shell = ["busybox", "sh"] if shutil.which("busybox") else ["dash"]
    result = subprocess.run(
        [*shell, ROOT / "ci" / "scripts" / "app-test.sh"],
        cwd=tmp_path,
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "RECORD": str(record),
            "APP_TESTS": app_tests,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return result, record.read_text()


def test_installs_the_dockerfiles_packages_and_runs_pytest_stand_in(tmp_path: Path) -> None:
    """The same python3/py3-* packages and constraints as the image, plus the test tools."""
    result, record = run_app_test(tmp_path, DOCKERFILE)
    assert result.returncode == 0, result.stderr
    apk, pip, pytest_run = record.splitlines()
    assert apk == (
        "apk add --no-cache python3~=3.14 py3-pip py3-flask~=3.1 py3-gunicorn~=25.2"
        " dash openssl | PYTHONPATH="
    )
    # The tests' own dependencies: pinned, no resolver, wheels only, in a folder of their own.
    site = re.fullmatch(
        r"python3 -m pip install --disable-pip-version-check --no-cache-dir --no-deps"
        r" --only-binary=:all: --target (\S+) --requirement requirements/app-test.txt"
        r" \| PYTHONPATH=",
        pip,
    )
    assert site, pip
    # ...which only pytest's process sees; the app_tests input reaches pytest unsplit, in
    # PYTEST_ADDOPTS, which pytest splits as a shell would (quotes included).
    assert pytest_run == (
        "python3 -m pytest -p no:cacheprovider --junitxml=build/app-test.xml"
        f" | PYTHONPATH={site[1]} PYTEST_ADDOPTS={APP_TESTS}"
    )
    assert shlex.split(APP_TESTS) == ["-m", "not browser", "tests/app", "tests/server"]


def test_no_app_tests_named_is_an_error_stand_in(tmp_path: Path) -> None:
    """The job runs only with the app_tests input; the script alone says what is missing."""
    result, record = run_app_test(tmp_path, DOCKERFILE, app_tests="")
    assert result.returncode != 0
    assert "ERROR: no app tests named: set the app_tests input" in result.stderr
    assert record == ""


def test_pip_is_added_when_the_image_lacks_it_stand_in(tmp_path: Path) -> None:
    """pip installs the test requirements, so a Dockerfile without py3-pip still works."""
    result, record = run_app_test(tmp_path, DOCKERFILE.replace("        py3-pip \\\n", ""))
    assert result.returncode == 0, result.stderr
    assert record.splitlines()[0] == (
        "apk add --no-cache python3~=3.14 py3-flask~=3.1 py3-gunicorn~=25.2"
        " py3-pip dash openssl | PYTHONPATH="
    )


def test_missing_test_requirements_are_an_error_stand_in(tmp_path: Path) -> None:
    """Without the requirements file the tests cannot import what they need: stop first."""
    result, record = run_app_test(tmp_path, DOCKERFILE, requirements=False)
    assert result.returncode != 0
    assert "requirements/app-test.txt is missing" in result.stderr
    assert record == ""


def test_a_dockerfile_without_python_packages_is_an_error_stand_in(tmp_path: Path) -> None:
    """No packages found means the script cannot promise the image's environment: stop."""
    result, record = run_app_test(tmp_path, "FROM alpine:3.24.2\nRUN apk add --no-cache curl\n")
    assert result.returncode != 0
    assert "no python3/py3-* packages" in result.stderr
    assert record == ""


def test_the_projects_dockerfile_is_understood_stand_in(tmp_path: Path) -> None:
    """The real Dockerfile yields its python3 and py3-flask packages."""
    if not (ROOT / "Dockerfile").is_file():
        pytest.skip("the Dockerfile has not landed in this checkout yet")
    result, record = run_app_test(tmp_path, (ROOT / "Dockerfile").read_text())
    assert result.returncode == 0, result.stderr
    installed = record.splitlines()[0].split()
    assert any(word.startswith("py3-flask") for word in installed)
    assert any(word.startswith("python3") for word in installed)


# Alpine packages whose Python distribution is not named like py3-<distribution>.
APK_DISTRIBUTIONS = {
    "py3-yaml": "pyyaml",
    "py3-openssl": "pyopenssl",
    "py3-dateutil": "python-dateutil",
}
# Where pytest finds our own modules (pyproject's pythonpath).
LOCAL_ROOTS = (ROOT, ROOT / "src")
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass
class JobEnvironment:
    """What app:test:job installs: distributions from apk, and from its requirements file."""

    python: str
    apk: set[str]
    pinned: dict[str, str]


def pins(path: Path) -> dict[str, str]:
    """NAME==VERSION lines of a requirements file, by canonical name (others are errors)."""
    found = {}
    for text in path.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        pin = PIN.fullmatch(line)
        assert pin, f"{path.name}: {line!r} is not pinned as NAME==VERSION"
        found[canonicalize_name(pin[1])] = pin[2]
    return found


def dependencies(name: str, python: str) -> set[str]:
    """The distributions NAME needs on Alpine's Linux and PYTHON (markers evaluated)."""
    environment = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    try:
        requires = metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed here: run `make tools`, then this test again")
    needed = set()
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            needed.add(canonicalize_name(requirement.name))
    return needed


def closure(names: set[str], python: str) -> set[str]:
    """NAMES and everything they need, transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(dependencies(name, python))
    return seen


@pytest.fixture(scope="module")
def job_environment(tmp_path_factory: pytest.TempPathFactory) -> JobEnvironment:
    """Read from app-test.sh's own recorded apk and pip calls for the project's Dockerfile;
    an apk py3-* package brings its distribution and that one's dependencies (the local
    venv has the same versions: requirements/runtime.txt pins Alpine's)."""
    result, record = run_app_test(
        tmp_path_factory.mktemp("app-test"), (ROOT / "Dockerfile").read_text()
    )
    assert result.returncode == 0, result.stderr
    apk_line, pip_line, _pytest_line = record.splitlines()
    packages = apk_line.split(" | ")[0].split()[3:]
    [python] = [m[1] for p in packages if (m := re.fullmatch(r"python3~=(\d+\.\d+)", p))]
    distributions = set()
    for package in packages:
        name = re.split(r"[~=<>]", package, maxsplit=1)[0]
        if name.startswith("py3-"):
            distributions.add(canonicalize_name(APK_DISTRIBUTIONS.get(name, name[4:])))
    requirements = pip_line.split("--requirement ")[1].split(" | ")[0]
    return JobEnvironment(python, closure(distributions, python), pins(ROOT / requirements))


def test_app_test_requirements_are_complete_pinned_and_shadow_nothing(
    job_environment: JobEnvironment,
) -> None:
    """pip installs the file with --no-deps: every dependency of every entry must be in it
    or come from apk; no entry may replace an apk package; dev.txt's pins are kept."""
    env = job_environment
    shadowing = sorted(set(env.pinned) & env.apk)
    assert not shadowing, f"requirements/app-test.txt would replace apk packages: {shadowing}"
    missing = sorted(closure(set(env.pinned), env.python) - set(env.pinned) - env.apk)
    assert not missing, f"add these dependencies to requirements/app-test.txt, pinned: {missing}"
    dev = pins(ROOT / "requirements" / "dev.txt")
    differing = {name: (version, dev[name]) for name, version in env.pinned.items()
                 if name in dev and dev[name] != version}  # fmt: skip
    assert not differing, f"pin these as requirements/dev.txt does: {differing}"


def imported_modules(path: Path) -> set[str]:
    """Absolute module names PATH imports (and `from M import N` candidates M.N)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def local_files(module: str) -> list[Path] | None:
    """Our own files that importing MODULE runs; None when MODULE is not ours."""
    parts = module.split(".")
    for root in LOCAL_ROOTS:
        if (root / parts[0]).is_dir() or (root / f"{parts[0]}.py").is_file():
            files = [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
            files += [root.joinpath(*parts).with_suffix(".py")]
            return [file for file in files if file.is_file()]
    return None


def unprovided_imports(start: list[Path], allowed: set[str]) -> dict[str, set[str]]:
    """Third-party modules that START (and our modules they import) need, whose
    distribution is not in ALLOWED: {module: files that import it}."""
    owners = metadata.packages_distributions()
    missing: dict[str, set[str]] = {}
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            top = module.split(".")[0]
            ours = local_files(module)
            if top in sys.stdlib_module_names:
                continue
            if ours is not None:
                todo.extend(ours)
                continue
            if not {canonicalize_name(d) for d in owners.get(top, [])} & allowed:
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                missing.setdefault(top, set()).add(str(where))
    return missing


def test_every_app_test_import_is_installed_by_the_job(job_environment: JobEnvironment) -> None:
    """tests/app and tests/server (with their conftests and whatever of ours they import)
    import only the stdlib, apk's packages and the job's requirements; the app itself
    (src/) only the stdlib and apk's packages, as it runs in the image."""
    env = job_environment
    tests = [
        ROOT / "tests" / "conftest.py",
        *sorted((ROOT / "tests" / "app").rglob("*.py")),
        *sorted((ROOT / "tests" / "server").rglob("*.py")),
    ]
    missing = unprovided_imports(tests, env.apk | set(env.pinned))
    assert not missing, f"app:test:job installs nothing that provides: {missing}"
    app = sorted((ROOT / "src").rglob("*.py"))
    assert app, "the app's sources are missing"
    missing = unprovided_imports(app, env.apk)
    assert not missing, f"the image's apk packages provide none of: {missing}"


def test_the_import_check_notices_a_new_dependency(
    tmp_path: Path, job_environment: JobEnvironment
) -> None:
    """A test that starts importing a package the job does not install is caught, also
    through a module of ours it imports."""
    test = tmp_path / "test_new.py"
    test.write_text("import json\nfrom flask import Flask\nimport cryptography.x509\n")
    helper = tmp_path / "test_uses_ours.py"
    helper.write_text("from flask_example.app import metrics\nimport yaml\n")
    env = job_environment
    missing = unprovided_imports([test, helper], env.apk)
    assert set(missing) == {"cryptography", "yaml"}
    assert set(unprovided_imports([test, helper], env.apk | set(env.pinned))) == {"cryptography"}
    # src/flask_example/app/metrics.py, which the helper imports, needs prometheus_client.
    assert (
        "src/flask_example/app/metrics.py"
        in unprovided_imports([helper], set())["prometheus_client"]
    )
