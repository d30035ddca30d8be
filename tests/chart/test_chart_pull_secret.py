"""The chart's own pull secret (pullSecret.create): a kubernetes.io/dockerconfigjson Secret
that every pod the chart renders pulls with, the password taken verbatim from a file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from tests.chart.chartlib import find, helm, one, pod_specs, render, template_args

PULL = "demo-flask-example-1-pull"


def docker_config(secret: dict) -> dict:
    """The decoded .dockerconfigjson of a pull Secret."""
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def test_no_pull_secret_by_default(helm_name: str) -> None:
    objects = render(helm_name)
    assert find(objects, "Secret") == []
    assert [name for name, spec in pod_specs(objects) if "imagePullSecrets" in spec] == []


def test_every_pod_pulls_with_the_charts_secret_then_the_listed_ones(helm_name: str) -> None:
    """Deployment and test pod: the chart's Secret first, then imagePullSecrets."""
    objects = render(helm_name, "full")
    secret = one(objects, "Secret")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    name = secret["metadata"]["name"]
    assert name.endswith("-pull")
    specs = pod_specs(objects)
    # The server's pods, the test pod and the one the NetworkPolicy keeps out.
    assert sorted(where.split("/")[0] for where, _ in specs) == ["Deployment", "Pod", "Pod"]
    for _, spec in specs:
        assert spec["imagePullSecrets"] == [{"name": name}, {"name": "gitlab-registry"}]
    auth = base64.b64encode(b"gitlab+deploy-token-7:made-up-pull-token").decode()
    assert docker_config(secret) == {
        "auths": {
            "registry.example.com:5000": {
                "username": "gitlab+deploy-token-7",
                "password": "made-up-pull-token",
                "auth": auth,
            }
        }
    }


def test_password_from_a_file_arrives_verbatim(helm_name: str, tmp_path: Path) -> None:
    """The pipeline hands the token over with --set-file (never on the command line): quotes,
    backslashes, colons and commas reach the Secret unchanged, and nothing is added."""
    password = 'gldt-a"b\\c:d,e=f'  # noqa: S105 - made up for the test
    secret_file = tmp_path / "password"
    secret_file.write_text(password)
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "pullSecret": {
                    "create": True,
                    "registry": "registry.example.com",
                    "username": "gitlab+deploy-token-1",
                }
            }
        )
    )
    args = template_args("default", "--values", str(values))
    result = helm(helm_name, *args, "--set-file", f"pullSecret.password={secret_file}")
    assert result.returncode == 0, result.stderr
    [secret] = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Secret"]
    entry = docker_config(secret)["auths"]["registry.example.com"]
    assert entry["password"] == password
    assert base64.b64decode(entry["auth"]).decode() == f"gitlab+deploy-token-1:{password}"
    assert secret["metadata"]["name"] == PULL
