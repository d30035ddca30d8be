"""ci/scripts/lib.sh's naming rules under a POSIX sh (dash, as BusyBox ash would run them)."""

import os
import random
import re
import string
import subprocess
from pathlib import Path

import pytest

from tests.pipeline.conftest import PROJECT, ROOT
from tests.pipeline.pipelinelib import LIB, SHELLS, dev_row, run_script, shell_command, short_hash
from tests.support.gitlab_api import HELM_CHANNEL

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
# An image tag, as the OCI distribution spec defines it.
IMAGE_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}")


def sh(shell: str, script: str, *args: str, env: dict | None = None) -> str:
    """Run SCRIPT with lib.sh sourced, in SHELL, and return its stdout."""
    result = subprocess.run(
        [*shell_command(shell), "-c", f'. "{LIB}"; {script}', "sh", *args],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **(env or {})},
    )
    return result.stdout.strip()


LONG = "a" * 60 + "-branch"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("dev", 53, "dev"),
        ("dev-flask-example-1", 53, "dev-flask-example-1"),
        ("feature/Login_Form", 63, "feature-login-form"),
        ("Feature__X--", 63, "feature-x"),
        (f"{LONG}-flask-example-1", 53, f"{'a' * 44}-{short_hash(LONG + '-flask-example-1')}"),
        # The cut lands on a "-": it is dropped before the suffix.
        ("a" * 43 + "-bbbbbbbbbbbbb", 53, f"{'a' * 43}-{short_hash('a' * 43 + '-bbbbbbbbbbbbb')}"),
        ("___", 63, short_hash("___")),
    ],
)
def test_fit_name(shell: str, value: str, limit: int, expected: str) -> None:
    """Valid names stay as they are; others become the slug, shortened with a stable hash."""
    assert sh(shell, 'fit_name "$1" "$2"', value, str(limit)) == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_fit_name_always_gives_a_dns_label(shell: str) -> None:
    """Whatever the branch, the result is a DNS label within the limit, the same every time."""
    rng = random.Random(4)  # noqa: S311 - reproducible test input, not a secret
    alphabet = string.ascii_letters + string.digits + "-_./"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))) for _ in range(40)]
    script = 'for v in "$@"; do fit_name "$v" 53; done'
    first = sh(shell, script, *values).splitlines()
    assert first == sh(shell, script, *values).splitlines()
    assert len(set(first)) == len(set(values))
    for name in first:
        assert DNS_LABEL.fullmatch(name)
        assert len(name) <= 53


@pytest.mark.parametrize("shell", SHELLS)
def test_fit_names_keeps_original_values_and_fixes_long_ones(shell: str) -> None:
    """fit_names: the original values of a DNS-label branch unchanged; a long one made valid."""
    script = "fit_names; echo $NS $RELEASE_NAME $CHANNEL $IMAGE_TAG $HOST"
    original = {
        "NS": "dev",
        "RELEASE_NAME": "dev-flask-example-1",
        "CHANNEL": "dev",
        "IMAGE_TAG": "dev",
        "HOST": "dev.flask-example-1.fzen.pro",
    }
    assert sh(shell, script, env=original).split() == list(original.values())
    slug = "b" * 63
    long_branch = {
        **original,
        "RELEASE_NAME": f"{slug}-flask-example-1",
        "CHANNEL": slug,
        "IMAGE_TAG": slug,
        "HOST": f"{slug}.Flask_Example.fzen.pro",
    }
    ns, release, channel, tag, host = sh(shell, script, env=long_branch).split()
    assert (ns, channel, tag) == ("dev", slug, slug)
    assert release == f"{'b' * 44}-{short_hash(long_branch['RELEASE_NAME'])}"
    assert host == f"{slug}.flask-example.fzen.pro"


def fitted(label: str, release: str | None = None) -> list[str]:
    """NS, RELEASE_NAME, CHANNEL, IMAGE_TAG and HOST of a dev branch whose label is LABEL."""
    return ["dev", release or f"{label}-{PROJECT}", label, label, f"{label}.{PROJECT}.fzen.pro"]


LONG_BRANCH = "feature/" + "x" * 72  # 80 characters
LONG_LABEL = "feature-" + "x" * 46 + "-" + short_hash(LONG_BRANCH)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("dev", fitted("dev")),  # a DNS label: exactly the original table's values
        ("main", fitted("main")),  # not the default branch: an ordinary dev branch
        ("feature/Login_Form", fitted("feature-login-form")),
        ("fix__bug", fitted("fix-bug")),  # GitLab's slug fix--bug: no channel
        ("feature/-x", fitted("feature-x")),
        ("a.b", fitted("a-b")),  # one label: the host stays under the project's domain
        ("UPPER_case", fitted("upper-case")),
        (
            LONG_BRANCH,
            fitted(LONG_LABEL, f"feature-{'x' * 36}-{short_hash(LONG_LABEL + '-' + PROJECT)}"),
        ),
        # Never prod's channel or image tag.
        ("release", ["dev", f"release-{PROJECT}", f"release-{short_hash('release')}", "release",
                     f"release.{PROJECT}.fzen.pro"]),
        ("latest", ["dev", f"latest-{PROJECT}", "latest", f"latest-{short_hash('latest')}",
                    f"latest.{PROJECT}.fzen.pro"]),
        ("Latest", ["dev", f"latest-{PROJECT}", "latest", f"latest-{short_hash('latest')}",
                    f"latest.{PROJECT}.fzen.pro"]),
    ],
)  # fmt: skip
def test_fit_names_of_a_dev_branch(shell: str, branch: str, expected: list) -> None:
    """A DNS-label branch keeps the original values; any other gets its label in each name;
    every name is one Kubernetes, DNS, the registry and GitLab's Helm API accept, and never
    prod's."""
    script = "fit_names; echo $NS $RELEASE_NAME $CHANNEL $IMAGE_TAG $HOST"
    names = sh(shell, script, env=dev_row(branch)).split()
    assert names == expected
    _ns, release, channel, tag, host = names
    assert DNS_LABEL.fullmatch(release)
    assert len(release) <= 53
    assert HELM_CHANNEL.match(channel)
    assert IMAGE_TAG.fullmatch(tag)
    assert all(DNS_LABEL.fullmatch(label) and len(label) <= 63 for label in host.split("."))
    assert channel != "release"
    assert tag != "latest"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("channel", "expected"),
    [("UPPER_case", "UPPER_case"), ("a.b", "a.b"), ("fix__bug", "fix-bug"), ("x-", "x")],
)
def test_fit_channel_keeps_what_gitlab_accepts(shell: str, channel: str, expected: str) -> None:
    """A channel set by hand (no branch in it) stays when GitLab's rule takes it."""
    assert sh(shell, 'fit_channel "$1"', channel) == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_fit_names_of_prod_are_the_original_values(shell: str) -> None:
    """A prod pipeline on a branch that is no DNS label: the fixed prod names, untouched."""
    prod = {
        "CI_COMMIT_BRANCH": "Release/1.x",
        "NS": "prod",
        "RELEASE_NAME": PROJECT,
        "CHANNEL": "release",
        "IMAGE_TAG": "latest",
        "HOST": f"{PROJECT}.fzen.pro",
    }
    script = "fit_names; echo $NS $RELEASE_NAME $CHANNEL $IMAGE_TAG $HOST"
    assert sh(shell, script, env=prod).split() == list(prod.values())[1:]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("helm", "flag"), [(3, "--atomic"), (4, "--rollback-on-failure")])
def test_rollback_flag_follows_the_helm_major_version(shell: str, helm: int, flag: str) -> None:
    """Helm 4 renamed --atomic; the real helm binary of each major decides the flag."""
    helm_dir = ROOT / ".tools" / f"helm{helm}"
    path = f"{helm_dir}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        [*shell_command(shell), "-c", f'. "{LIB}"; helm_rollback_flag'],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": path, "HOME": str(ROOT / ".tools")},
    )
    assert result.stdout.strip() == flag


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CERTIFICATE_ISSUER_NAME": ""}, "the certificate_issuer_name input is empty"),
        ({"CERTIFICATE_ISSUER_NAME": 'ca"x'}, "holds a quote, backslash or control character"),
        ({"INGRESS_CLASS_NAME": "a\\b"}, "holds a quote, backslash or control character"),
    ],
)
def test_deploy_values_refuse_bad_input(
    shell: str, tmp_path: Path, change: dict, message: str
) -> None:
    """A value that would break the values file stops the job with the fix, writing nothing."""
    result = run_script(shell, "deploy-values.sh", tmp_path, change)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "build" / "values" / "deploy.yaml").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_an_unreadable_helm_version_stops_the_job(shell: str, tmp_path: Path) -> None:
    """No guessing a rollback flag: a helm whose version cannot be read is an error."""
    fake = tmp_path / "helm"
    fake.write_text("#!/bin/sh\necho 'version unknown'\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [*shell_command(shell), "-ec", f'. "{LIB}"; flag=$(helm_rollback_flag); echo "$flag"'],
        env={"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "cannot read the Helm version" in result.stderr


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("tier", ["", "staging"])
def test_chart_config_needs_a_known_tier(shell: str, tmp_path: Path, tier: str) -> None:
    """helm-test-config.sh names its rendering after the pipeline's tier, prod or dev: any
    other tier is a mistake in the wiring, stopped before anything runs."""
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart" / "Chart.yaml").write_text("name: x\n")
    result = run_script(shell, "helm-test-config.sh", tmp_path, {"PIPELINE_TIER": tier})
    assert result.returncode != 0
    assert f"PIPELINE_TIER is '{tier}', not prod or dev" in result.stderr
    assert not (tmp_path / "build").exists()
