"""The `helm upgrade --install` commands in the READMEs work with the chart as it is."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from tests.chart.chartlib import CHART, ROOT, find, helm, one

# Stand-ins for the README's <placeholders>, by the value they fill.
PLACEHOLDERS = {
    "image.digest": "sha256:" + "ab" * 32,
    "certificate.issuerRef.name": "private-ca",
    "publicCertificate.issuerRef.name": "letsencrypt",
    "ingress.className": "external-nginx",
}
COMMAND = re.compile(r"^helm upgrade --install (?:.*\\\n)*.*$", re.M)
COMMANDS = [
    pytest.param(match.group(0), id=f"{path.relative_to(ROOT)}-{n}")
    for path in (ROOT / "README.md", CHART / "README.md")
    for n, match in enumerate(COMMAND.finditer(path.read_text()))
]


def test_readmes_show_the_deploy_commands() -> None:
    assert len(COMMANDS) == 3, "one in README.md, two (plain and TLS) in chart/README.md"


def set_values(command: str) -> list[tuple[str, str]]:
    """The `--set key=value` pairs of a README command, placeholders filled in."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:5] == ["helm", "upgrade", "--install", "flask-example-1", "./chart"]
    pairs = [words[i + 1].partition("=")[::2] for i, word in enumerate(words) if word == "--set"]
    return [(key, PLACEHOLDERS[key] if "<" in value else value) for key, value in pairs]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_renders(helm_name: str, command: str) -> None:
    pairs = set_values(command)
    args = [arg for key, value in pairs for arg in ("--set", f"{key}={value}")]
    result = helm(helm_name, "template", "flask-example-1", str(CHART), "-n", "demo", *args)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert one(objects, "Deployment")
    if ("certificate.enabled", "true") in pairs:
        # Two Certificates, each from its own issuer, in separate secrets.
        certs = {c["metadata"]["name"]: c["spec"] for c in find(objects, "Certificate")}
        assert certs["flask-example-1"]["issuerRef"]["name"] == "private-ca"
        assert certs["flask-example-1-public"]["issuerRef"]["name"] == "letsencrypt"
        ingress = one(objects, "Ingress")
        assert ingress["spec"]["ingressClassName"] == "external-nginx"
        assert (
            ingress["spec"]["tls"][0]["secretName"] == certs["flask-example-1-public"]["secretName"]
        )
        assert ingress["spec"]["tls"][0]["secretName"] != certs["flask-example-1"]["secretName"]


def test_placeholders_are_only_the_documented_facts() -> None:
    placeholders = {
        key
        for param in COMMANDS
        for key, value in (
            p.partition("=")[::2] for p in re.findall(r"--set (\S+)", param.values[0])
        )
        if "<" in value
    }
    assert placeholders == set(PLACEHOLDERS)
