"""The deploy values (ci/scripts/deploy-values.sh) rendered by the real chart with real Helm 3
and 4: the public host's certificate is never the pod's, with or without a public issuer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import HELM, ROOT
from tests.pipeline.pipelinelib import DEPLOY_ENV, SHELLS, run_script


def render(helm: int, values: Path) -> list[dict]:
    """The chart rendered as the deploy job installs it: its release, namespace, values and
    (made up) pull credential."""
    result = subprocess.run(
        [
            str(HELM[helm]),
            "template",
            DEPLOY_ENV["RELEASE_NAME"],
            str(ROOT / "chart"),
            "--namespace",
            DEPLOY_ENV["NS"],
            "--values",
            str(values),
            # The pull credential, which the deploy job hands over from private files.
            "--set-string",
            "pullSecret.username=deploy-token-user,pullSecret.password=made-up-deploy-token",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"HOME": str(ROOT / ".tools" / "helm-home"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("helm", [3, 4])
@pytest.mark.parametrize(("issuer", "kind"), [("", ""), ("letsencrypt", "Issuer")])
def test_the_ingress_never_serves_the_pods_certificate(
    shell: str, tmp_path: Path, helm: int, issuer: str, kind: str
) -> None:
    result = run_script(
        shell,
        "deploy-values.sh",
        tmp_path,
        {"PUBLIC_ISSUER_NAME": issuer, "PUBLIC_ISSUER_KIND": kind},
    )
    assert result.returncode == 0, result.stderr
    values_file = tmp_path / result.stdout.strip()
    values = yaml.safe_load(values_file.read_text())
    assert values["ingress"]["tls"] == {"enabled": True}
    objects = render(helm, values_file)

    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    pod_secret = next(v["secret"]["secretName"] for v in volumes if v["name"] == "tls")
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    [tls] = ingress["spec"]["tls"]
    assert tls["hosts"] == [DEPLOY_ENV["HOST"]]
    assert tls.get("secretName") != pod_secret
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-secret"].endswith(f"/{pod_secret}")
    service = f"{deployment['metadata']['name']}.{DEPLOY_ENV['NS']}.svc"
    assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-name"] == service

    certs = {c["spec"]["secretName"]: c["spec"] for c in objects if c["kind"] == "Certificate"}
    assert certs.pop(pod_secret)["issuerRef"]["name"] == DEPLOY_ENV["CERTIFICATE_ISSUER_NAME"]
    if issuer:
        assert list(certs) == [tls["secretName"]]
        public = certs[tls["secretName"]]
        assert public["dnsNames"] == [DEPLOY_ENV["HOST"]]
        assert public["issuerRef"] == {"name": issuer, "kind": kind, "group": "cert-manager.io"}
    else:
        # No public issuer: the controller's default certificate, no secret of ours.
        assert "secretName" not in tls
        assert certs == {}
        assert "publicCertificate" not in values


@pytest.mark.parametrize("shell", SHELLS)
def test_a_public_issuer_kind_defaults_to_cluster_issuer(shell: str, tmp_path: Path) -> None:
    result = run_script(shell, "deploy-values.sh", tmp_path, {"PUBLIC_ISSUER_NAME": "le"})
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((tmp_path / result.stdout.strip()).read_text())
    assert values["publicCertificate"] == {
        "enabled": True,
        "issuerRef": {"name": "le", "kind": "ClusterIssuer"},
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_a_quote_in_the_public_issuer_stops_the_job(shell: str, tmp_path: Path) -> None:
    result = run_script(shell, "deploy-values.sh", tmp_path, {"PUBLIC_ISSUER_NAME": 'le"x'})
    assert result.returncode != 0
    assert "holds a quote, backslash or control character" in result.stderr
    assert not (tmp_path / "build" / "values" / "deploy.yaml").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_the_ingress_namespace_input_turns_the_network_policy_on(
    shell: str, tmp_path: Path
) -> None:
    result = run_script(shell, "deploy-values.sh", tmp_path, {"INGRESS_NAMESPACE": "ingress-nginx"})
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((tmp_path / result.stdout.strip()).read_text())
    assert values["networkPolicy"] == {
        "enabled": True,
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
        ],
    }
    result = run_script(shell, "deploy-values.sh", tmp_path, {"INGRESS_NAMESPACE": ""})
    values = yaml.safe_load((tmp_path / result.stdout.strip()).read_text())
    assert "networkPolicy" not in values


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("namespace", ["Ingress_Nginx", "-ingress", "a" * 64])
def test_a_wrong_ingress_namespace_stops_the_job(
    shell: str, tmp_path: Path, namespace: str
) -> None:
    result = run_script(shell, "deploy-values.sh", tmp_path, {"INGRESS_NAMESPACE": namespace})
    assert result.returncode != 0
    assert f"the ingress_namespace input '{namespace}' is not a namespace name" in result.stderr
    assert not (tmp_path / "build" / "values" / "deploy.yaml").exists()
