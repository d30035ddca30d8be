"""The Dockerfile, checked statically, and the image's start run as the image would run it.

No Docker engine runs here (the pipeline builds the image with kaniko), so the image-like test
lays out /app and /usr/local/bin the way the Dockerfile's COPY does, under a temporary root, and
starts the Dockerfile's ENTRYPOINT + CMD with its ENV, as its non-root USER, from its WORKDIR.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from flask_example.settings import load_settings
from tests.server.conftest import ROOT, free_port

DOCKERFILE = ROOT / "Dockerfile"
CHART_UID = 10001  # the chart's securityContext runAsUser/runAsGroup
BUILD_ARGS = {"APP_VERSION", "APP_COMMIT", "APP_BRANCH", "BUILD_DATE", "SOURCE_URL"}
# build arg -> the OCI label it fills
LABELS = {
    "APP_VERSION": "org.opencontainers.image.version",
    "APP_COMMIT": "org.opencontainers.image.revision",
    "BUILD_DATE": "org.opencontainers.image.created",
    "SOURCE_URL": "org.opencontainers.image.source",
}
# requirements/runtime.txt name -> Alpine package
APK_NAMES = {
    "flask": "py3-flask",
    "werkzeug": "py3-werkzeug",
    "gunicorn": "py3-gunicorn",
    "prometheus-client": "py3-prometheus-client",
    "wsproto": "py3-wsproto",
    "h11": "py3-h11",
}


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def all_of(name: str) -> list[str]:
    """The arguments of every instruction called name."""
    return [args for instruction, args in instructions() if instruction == name]


def pairs(args: str, defaults: dict[str, str]) -> dict[str, str]:
    """KEY=VALUE pairs of an ENV or LABEL instruction, ${ARG}s filled in from defaults."""
    result = {}
    for word in shlex.split(args):
        key, _, value = word.partition("=")
        result[key] = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), ""), value)
    return result


def arg_defaults() -> dict[str, str]:
    """The build args and their defaults."""
    return pairs(" ".join(all_of("ARG")), {})


def exec_form(name: str) -> list[str]:
    """The JSON array of an ENTRYPOINT or CMD."""
    (args,) = all_of(name)
    return json.loads(args)


def apk_packages() -> dict[str, str]:
    """Package -> version constraint of the apk add line."""
    (run,) = [args for args in all_of("RUN") if "apk add" in args]
    packages = {}
    for word in run.split("&&")[0].split()[3:]:
        name, _, version = word.partition("~=")
        packages[name] = version
    return packages


def test_base_image_is_a_pinned_alpine_release():
    (base,) = all_of("FROM")
    assert re.fullmatch(r"alpine:3\.\d+\.\d+(@sha256:[0-9a-f]{64})?", base), base


def test_runs_as_the_charts_numeric_non_root_user():
    (user,) = all_of("USER")
    assert user == f"{CHART_UID}:{CHART_UID}"
    (run,) = [args for args in all_of("RUN") if "adduser" in args]
    assert f"-g {CHART_UID}" in run
    assert f"-u {CHART_UID}" in run


def test_every_build_arg_is_declared_and_reaches_labels_and_env():
    assert set(arg_defaults()) == BUILD_ARGS
    labels = pairs(" ".join(all_of("LABEL")), {arg: f"<{arg}>" for arg in BUILD_ARGS})
    for arg, label in LABELS.items():
        assert labels[label] == f"<{arg}>"
    env = pairs(" ".join(all_of("ENV")), {arg: f"<{arg}>" for arg in BUILD_ARGS})
    for arg in ("APP_VERSION", "APP_COMMIT", "APP_BRANCH"):
        assert env[arg] == f"<{arg}>"
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    assert labels["org.opencontainers.image.title"] == "flask-example-1"
    assert labels["org.opencontainers.image.licenses"] == "MIT"  # the repository's LICENSE


def test_exec_form_entrypoint_and_cmd_and_no_add():
    assert exec_form("ENTRYPOINT") == ["/usr/local/bin/entrypoint.sh"]
    assert exec_form("CMD") == ["gunicorn"]
    assert not all_of("ADD")
    (healthcheck,) = all_of("HEALTHCHECK")
    assert '"python3", "-m", "flask_example.probe"' in healthcheck


def test_exposes_exactly_the_ports_the_image_listens_on():
    """EXPOSE says what the server started with the Dockerfile's ENV listens on: PORT, and
    PROBE_PORT only where the image sets it (the chart sets it, so its pod spec names 8081)."""
    settings = load_settings(pairs(" ".join(all_of("ENV")), arg_defaults()))
    listened = [settings.port] + ([settings.probe_port] if settings.probe_port else [])
    assert " ".join(all_of("EXPOSE")).split() == [str(port) for port in listened]


def test_apk_pins_match_the_runtime_requirements():
    packages = apk_packages()
    assert {"python3", "py3-pip", "py3-flask", "py3-gunicorn"} <= set(packages)
    requirements = {}
    for line in (ROOT / "requirements" / "runtime.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            requirements[APK_NAMES[name]] = version
    # apk constrains major.minor only (patch releases of the Alpine branch must install); the
    # exact local pins must lie inside that constraint.
    minor = {name: ".".join(version.split(".")[:2]) for name, version in requirements.items()}
    assert {name: packages.get(name) for name in requirements} == minor


def test_apk_constraints_go_no_deeper_than_the_minor_version():
    for name, version in apk_packages().items():
        if version:
            assert re.fullmatch(r"\d+\.\d+", version), f"{name}~={version}: constrain major.minor"


def test_every_ignored_lint_rule_says_why_on_its_own_line():
    ignores = [line for line in DOCKERFILE.read_text().splitlines() if "hadolint ignore" in line]
    for line in ignores:
        # hadolint reads the rules up to the first space; a second `#` starts the reason.
        assert re.fullmatch(r"# hadolint ignore=[A-Z]+\d+(,[A-Z]+\d+)* # \S.{9,}", line), line


def test_dockerignore_sends_only_what_the_dockerfile_copies():
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {shlex.split(args)[0].rstrip("/") for args in all_of("COPY")}
    assert allowed == copied


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """The Dockerfile's COPYs under a temporary root, owned by root, read-only for others."""
    root = tmp_path / "root"
    for args in all_of("COPY"):
        source, target = shlex.split(args)
        destination = root / target.lstrip("/")
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, destination)
    tmp = root / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    for path in [root, *root.rglob("*")]:
        if path != tmp:
            path.chmod(path.stat().st_mode & ~(stat.S_IWGRP | stat.S_IWOTH))
    # pytest's tmp_path is private to root: let the service's user reach the fake root.
    for parent in [root, *root.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    return root


def python_for(uid: int) -> str | None:
    """A python3 of our version that uid can run (the venv's may live under a private /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"],
            user=uid,
            group=uid,
            extra_groups=[],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def runtime_distributions() -> set[str]:
    """requirements/runtime.txt and everything it pulls in: what apk's py3-* packages install."""
    pending = [
        Requirement(line).name
        for line in (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    found: set[str] = set()
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        found.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            # Extras are never installed; markers such as python_version < '3.10' decide.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def site_packages(root: Path) -> Path:
    """Where Alpine's python3 keeps the packages apk installs, under root."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return root / "usr" / "lib" / version / "site-packages"


def install_python(root: Path, python: str) -> None:
    """python3, gunicorn and the runtime packages in the fake root, as apk installs them.

    Copied, world-readable, rather than pointing at the venv: the repository may sit in a
    folder the image's user cannot enter (a CI clone under /root).
    """
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3").symlink_to(python)
    gunicorn = bin_dir / "gunicorn"
    gunicorn.write_text(f"#!{python}\nfrom gunicorn.app.wsgiapp import run\n\nrun()\n")
    target = site_packages(root)
    for name in runtime_distributions():
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            # Console scripts land outside site-packages (../../../bin); bytecode is rebuilt.
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            destination = target / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(distribution.locate_file(file), destination)
    gunicorn.chmod(0o755)
    for path in [target.parent, target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def image_env(root: Path) -> dict[str, str]:
    """The Dockerfile's ENV (paths moved under root), as a container gets it."""
    env = pairs(" ".join(all_of("ENV")), arg_defaults())
    env = {key: value.replace("/app", str(root / "app")) for key, value in env.items()}
    # Alpine's python3 finds its site-packages by itself; the host's python3 needs telling.
    env["PYTHONPATH"] += f"{os.pathsep}{site_packages(root)}"
    env.update(
        {
            "PATH": f"{root}/usr/local/bin:{root}/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/nonexistent",
            "TMPDIR": str(root / "tmp"),
            "PORT": str(free_port()),
            # The image listens on 0.0.0.0; tests never leave loopback.
            "LISTEN_HOST": "127.0.0.1",
            "TLS_CERT_FILE": str(root / "tmp" / "tls" / "tls.crt"),
            "TLS_KEY_FILE": str(root / "tmp" / "tls" / "tls.key"),
        }
    )
    return env


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the image's uid needs root")
@pytest.mark.parametrize(
    "shell",
    [
        pytest.param([], id="shebang"),
        # The image's /bin/sh is BusyBox ash.
        pytest.param(
            [shutil.which("busybox") or "busybox", "sh"],
            id="busybox",
            marks=pytest.mark.skipif(not shutil.which("busybox"), reason="no busybox"),
        ),
    ],
)
def test_image_start_as_its_user_with_a_read_only_app(start_server, image_root, shell):
    python = python_for(CHART_UID)
    if python is None:
        pytest.skip(f"no python{sys.version_info[0]}.{sys.version_info[1]} runnable by uid 10001")
    install_python(image_root, python)
    entrypoint = image_root / exec_form("ENTRYPOINT")[0].lstrip("/")
    workdir = image_root / all_of("WORKDIR")[0].lstrip("/")
    env = image_env(image_root)
    server = start_server(
        *exec_form("CMD"),
        shell=shell,
        entrypoint=entrypoint,
        env=env,
        cwd=workdir,
        preexec_user=CHART_UID,
    )
    status, _, body = server.get("/version")
    assert status == 200
    assert b'"version"' in body
    ids = {
        int(value)
        for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
        if line.startswith(("Uid:", "Gid:", "Groups:"))
        for value in line.split()[1:]
    }
    assert ids == {CHART_UID}, "real, effective, saved and supplementary ids are all 10001"
    # Nothing under /app became writable or gained files (bytecode, sockets, state).
    before = sorted(p.relative_to(image_root) for p in (image_root / "app").rglob("*"))
    assert server.get("/metrics")[0] == 200
    after = sorted(p.relative_to(image_root) for p in (image_root / "app").rglob("*"))
    assert before == after
    # All the server's state is in /tmp: the runtime dir with the multiprocess metrics.
    (runtime,) = (image_root / "tmp").glob("flask-example-*")
    assert runtime.stat().st_uid == CHART_UID
    assert list((runtime / "metrics").glob("*.db"))
    # The HEALTHCHECK, run as Docker would: same user, environment and working directory.
    healthcheck = subprocess.run(
        json.loads(all_of("HEALTHCHECK")[0].split("CMD", 1)[1]),
        env=env,
        cwd=workdir,
        user=CHART_UID,
        group=CHART_UID,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert healthcheck.returncode == 0, healthcheck.stderr
    server.signal(signal.SIGTERM)
    status = server.wait(timeout=30)
    assert status == 0, f"server exited with {status}:\n{server.logs()}"
