"""Assertions on the objects the chart renders (parsed YAML, never text matching)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.chartlib import (
    CHART,
    MATRIX,
    NAMESPACE,
    PIPELINE_CASES,
    RELEASE,
    denied_pods,
    find,
    helm,
    one,
    pod_specs,
    probe_options,
    proving_pod,
    render,
)

TLS_CASES = ["tls-certificate", "default-certificate", "tls-existing-secret", "httproute", "full"]
PLAIN_CASES = ["default", "digest", "autoscaling", "no-service", "plain-http"]


def container(objects: list[dict]) -> dict:
    """The server container of the Deployment."""
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(ctr: dict) -> dict[str, dict]:
    """A container's env entries by name."""
    return {item["name"]: item for item in ctr.get("env", [])}


def merged(base: dict, override: dict) -> dict:
    """Helm's merge of a values file over the defaults: maps deeply, everything else replaced."""
    result = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(base.get(key), dict)
        result[key] = merged(base[key], value) if both_maps else value
    return result


def values_of(case: str) -> dict:
    """The values a matrix case renders with."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if case == "default":
        return values
    return merged(values, yaml.safe_load((CHART / "ci" / f"{case}-values.yaml").read_text()))


def chart_name(objects: list[dict]) -> str:
    """The chart name part of the fullname (nameOverride aware)."""
    return one(objects, "Deployment")["metadata"]["labels"]["app.kubernetes.io/name"]


def service_host(objects: list[dict]) -> str:
    """The Service's in-cluster name `<svc>.<ns>.svc`, which in-cluster clients verify."""
    return f"{one(objects, 'Service')['metadata']['name']}.{NAMESPACE}.svc"


def pod_certificate(objects: list[dict]) -> dict:
    """The pod's Certificate: the one named like the Deployment (the public one is `-public`)."""
    name = one(objects, "Deployment")["metadata"]["name"]
    [cert] = [c for c in find(objects, "Certificate") if c["metadata"]["name"] == name]
    return cert


def test_matrix_splits_into_tls_and_plain_cases() -> None:
    assert sorted(TLS_CASES + PLAIN_CASES) == sorted(MATRIX)
    assert all(values_of(case)["tls"]["enabled"] for case in TLS_CASES)
    assert not any(values_of(case)["tls"]["enabled"] for case in PLAIN_CASES)


@pytest.mark.parametrize("case", TLS_CASES)
def test_tls_wiring(helm_name: str, case: str) -> None:
    objects = render(helm_name, case)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    ctr = container(objects)
    secret = next(v["secret"] for v in pod["volumes"] if v["name"] == "tls")
    expected_secret = values_of(case)["tls"]["secretName"] or f"{RELEASE}-{chart_name(objects)}-tls"
    assert secret["secretName"] == expected_secret
    # 0440 octal, which YAML and JSON carry as decimal 288; decimal 440 would be 0670.
    assert secret["defaultMode"] == 0o440
    assert secret["defaultMode"] == 288
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/tmp/tls", "readOnly": True}
    env = env_of(ctr)
    assert env["TLS_CERT_FILE"]["value"] == "/tmp/tls/tls.crt"
    assert env["TLS_KEY_FILE"]["value"] == "/tmp/tls/tls.key"
    assert [p["name"] for p in ctr["ports"]] == ["https", "probes"]
    # The probes have a port of their own, plain HTTP whatever the app speaks.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert ctr[probe]["httpGet"]["scheme"] == "HTTP"
        assert ctr[probe]["httpGet"]["port"] == "probes"
    assert env["PROBE_PORT"]["value"] == "8081"
    service = one(objects, "Service")
    assert [(p["name"], p["targetPort"], p["appProtocol"]) for p in service["spec"]["ports"]] == [
        ("https", "https", "https")
    ]
    for ingress in find(objects, "Ingress"):
        host = values_of(case)["host"]
        values = values_of(case)["ingress"]
        assert ingress["spec"].get("ingressClassName", "") == values["className"]
        path = ingress["spec"]["rules"][0]["http"]["paths"][0]
        assert (path["path"], path["pathType"]) == (values["path"], values["pathType"])
        assert values["annotations"].items() <= ingress["metadata"]["annotations"].items()
        # The public host's certificate is its own secret, never the pod's.
        public = values["tls"]["secretName"] or (
            f"{RELEASE}-{chart_name(objects)}-public-tls"
            if values_of(case)["publicCertificate"]["enabled"]
            else None
        )
        tls_entry = {"hosts": [host]} | ({"secretName": public} if public else {})
        assert ingress["spec"]["tls"] == [tls_entry]
        assert ingress["spec"]["tls"][0].get("secretName") != expected_secret
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
        assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {
            "name": "https"
        }
        if values_of(case)["ingress"]["nginx"]["verifyBackend"]:
            assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-verify"] == "on"
            assert (
                annotations["nginx.ingress.kubernetes.io/proxy-ssl-secret"]
                == f"{NAMESPACE}/{expected_secret}"
            )
            # The pod's trust domain: its CA and the Service's name, not the public host.
            assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-name"] == service_host(
                objects
            )
            assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-server-name"] == "on"
            depth = annotations["nginx.ingress.kubernetes.io/proxy-ssl-verify-depth"]
            assert depth == str(values_of(case)["ingress"]["nginx"]["verifyDepth"])
        else:
            assert "nginx.ingress.kubernetes.io/proxy-ssl-verify" not in annotations


@pytest.mark.parametrize("case", PLAIN_CASES)
def test_plain_http_has_no_tls_anywhere(helm_name: str, case: str) -> None:
    objects = render(helm_name, case)
    ctr = container(objects)
    assert all(
        v["name"] != "tls"
        for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    )
    assert "TLS_CERT_FILE" not in env_of(ctr)
    assert [p["name"] for p in ctr["ports"]] == ["http", "probes"]
    assert {
        ctr[p]["httpGet"]["scheme"] for p in ("startupProbe", "livenessProbe", "readinessProbe")
    } == {"HTTP"}
    for ingress in find(objects, "Ingress"):
        assert "tls" not in ingress["spec"]
        assert not any(
            k.startswith("nginx.ingress") for k in ingress["metadata"].get("annotations", {})
        )
    for monitor in find(objects, "ServiceMonitor"):
        assert monitor["spec"]["endpoints"][0]["scheme"] == "http"
        assert "tlsConfig" not in monitor["spec"]["endpoints"][0]


@pytest.mark.parametrize("case", ["tls-certificate", "default-certificate", "full"])
def test_pod_certificate_covers_only_service_names(helm_name: str, case: str) -> None:
    objects = render(helm_name, case)
    cert = pod_certificate(objects)["spec"]
    values = values_of(case)
    svc = one(objects, "Service")["metadata"]["name"]
    # Not the public host: nobody reaches the pod by it, and that name has its own certificate.
    assert cert["dnsNames"] == [
        svc,
        f"{svc}.{NAMESPACE}",
        f"{svc}.{NAMESPACE}.svc",
        f"{svc}.{NAMESPACE}.svc.cluster.local",
    ]
    assert cert["issuerRef"] == {
        "name": values["certificate"]["issuerRef"]["name"],
        "kind": values["certificate"]["issuerRef"]["kind"],
        "group": "cert-manager.io",
    }
    assert cert["privateKey"]["rotationPolicy"] == "Always"
    assert cert["duration"] == values["certificate"]["duration"]
    assert cert["renewBefore"] == values["certificate"]["renewBefore"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert cert["secretName"] == next(
        v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "tls"
    )
    # In-cluster clients verify the name the certificate carries.
    test_pod = proving_pod(objects)
    assert probe_options(test_pod)["tls-server-name"] in cert["dnsNames"]
    for monitor in find(objects, "ServiceMonitor"):
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["scheme"] == "https"
        assert endpoint["tlsConfig"]["serverName"] in cert["dnsNames"]
        assert endpoint["tlsConfig"]["ca"]["secret"] == {
            "name": cert["secretName"],
            "key": "ca.crt",
        }


def test_public_certificate_has_the_public_host_only(helm_name: str) -> None:
    objects = render(helm_name, "tls-certificate")
    [public] = [c for c in find(objects, "Certificate") if c != pod_certificate(objects)]
    assert public["metadata"]["name"] == f"{RELEASE}-flask-example-1-public"
    spec = public["spec"]
    assert spec["dnsNames"] == ["flask-example-1.example.com"]
    assert spec["issuerRef"] == {
        "name": "letsencrypt",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert spec["privateKey"] == {"rotationPolicy": "Always", "algorithm": "ECDSA", "size": 256}
    assert spec["secretName"] == one(objects, "Ingress")["spec"]["tls"][0]["secretName"]
    assert spec["secretName"] != pod_certificate(objects)["spec"]["secretName"]
    # The issuer's lifetime and renewal (Let's Encrypt fixes them), not the pod certificate's.
    assert "duration" not in spec
    assert "renewBefore" not in spec


def test_httproute_pod_certificate_keeps_its_key_settings(helm_name: str) -> None:
    objects = render(helm_name, "httproute")
    cert = one(objects, "Certificate")["spec"]
    assert cert["privateKey"] == {"rotationPolicy": "Always", "algorithm": "RSA", "size": 3072}
    assert "key encipherment" in cert["usages"]
    assert probe_options(proving_pod(objects))["tls-server-name"] == service_host(objects)
    assert probe_options(proving_pod(objects))["tls-server-name"] in cert["dnsNames"]


def test_httproute_attaches_to_gateway_and_service(helm_name: str) -> None:
    objects = render(helm_name, "httproute")
    route = one(objects, "HTTPRoute")["spec"]
    assert route["parentRefs"] == [
        {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
    ]
    assert route["hostnames"] == ["flask-example-1.example.net"]
    service = one(objects, "Service")
    assert route["rules"][0]["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]
    assert find(objects, "Ingress") == []
    # The Gateway speaks HTTPS to the pod and verifies the pod's certificate: the Service's
    # name, the pod secret's CA. The public host's certificate is the Gateway listener's.
    assert [c["spec"]["dnsNames"] for c in find(objects, "Certificate")] == [
        [
            service["metadata"]["name"],
            f"{service['metadata']['name']}.{NAMESPACE}",
            service_host(objects),
            f"{service_host(objects)}.cluster.local",
        ]
    ]
    policy = one(objects, "BackendTLSPolicy")["spec"]
    assert policy["targetRefs"] == [
        {
            "group": "",
            "kind": "Service",
            "name": service["metadata"]["name"],
            "sectionName": "https",
        }
    ]
    secret = one(objects, "Certificate")["spec"]["secretName"]
    assert policy["validation"] == {
        "hostname": service_host(objects),
        "caCertificateRefs": [{"group": "", "kind": "Secret", "name": secret}],
    }
    monitor = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert monitor["tlsConfig"] == {
        "serverName": service_host(objects),
        "ca": {"secret": {"name": secret, "key": "ca.crt"}},
    }


def test_backend_tls_policy_trusts_the_secret_ca_for_a_private_certificate(helm_name: str) -> None:
    objects = render(helm_name, "full")
    policy = one(objects, "BackendTLSPolicy")["spec"]["validation"]
    cert = pod_certificate(objects)["spec"]
    assert policy["hostname"] in cert["dnsNames"]
    assert policy["caCertificateRefs"] == [
        {"group": "", "kind": "Secret", "name": cert["secretName"]}
    ]


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize("case", MATRIX)
def test_every_pod_meets_restricted_profile(helm_name: str, case: str) -> None:
    objects = render(helm_name, case)
    specs = pod_specs(objects)
    # The Deployment, the helm test pod, and with a NetworkPolicy that admits some peers only,
    # the test pod that it must keep out.
    expected = 1 if case == "no-service" else 3 if case == "full" else 2
    assert len(specs) == expected, "the Deployment and the helm test pods"
    for where, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, where
        assert (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]) == (
            10001,
            10001,
            10001,
        ), where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["enableServiceLinks"] is False, where
        assert (
            not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        ), where
        for ctr in spec["containers"] + spec.get("initContainers", []):
            assert ctr["securityContext"] == RESTRICTED_CONTAINER, f"{where} {ctr['name']}"
            assert "ports" not in ctr or all("hostPort" not in p for p in ctr["ports"]), where
            for bound in ("requests", "limits"):
                resources = set(ctr["resources"][bound])
                assert {"cpu", "memory", "ephemeral-storage"} <= resources, where
        for volume in spec.get("volumes", []):
            # Restricted allows only these volume types (no hostPath).
            kinds = set(volume) - {"name"}
            assert kinds <= {
                "emptyDir",
                "secret",
                "configMap",
                "projected",
                "persistentVolumeClaim",
            }, where


@pytest.mark.parametrize("case", MATRIX)
def test_server_gets_writable_tmp_and_shuts_down_in_time(helm_name: str, case: str) -> None:
    objects = render(helm_name, case)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
    assert next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"]
    env = env_of(ctr)
    sleep = ctr["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    shutdown = (
        int(sleep[1]) + int(env["SHUTDOWN_DELAY"]["value"]) + int(env["GRACEFUL_TIMEOUT"]["value"])
    )
    assert pod["terminationGracePeriodSeconds"] > shutdown
    server = values_of(case)["server"]
    assert int(sleep[1]) == server["preStopSeconds"]
    assert env["WEB_CONCURRENCY"]["value"] == str(server["workers"])
    assert env["LOG_LEVEL"]["value"] == server["logLevel"]


def test_app_facts_come_from_values_and_downward_api(helm_name: str) -> None:
    objects = render(helm_name, "tls-certificate")
    env = env_of(container(objects))
    assert env["APP_CHANNEL"]["value"] == "release"
    assert env["APP_RELEASE"]["value"] == RELEASE
    assert env["APP_HOST"]["value"] == "flask-example-1.example.com"
    assert env["APP_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["APP_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The image bakes APP_VERSION in at build time; the chart must not contradict it.
    assert "APP_VERSION" not in env
    pod_annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert pod_annotations["app.gitlab.com/env"] == "prod"


def test_rollout_never_drops_below_desired(helm_name: str) -> None:
    strategy = one(render(helm_name), "Deployment")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_tag_and_digest(helm_name: str) -> None:
    assert container(render(helm_name))["image"] == "flask-example-1:1.0.0"
    digest = "sha256:" + "0123456789abcdef" * 4
    assert (
        container(render(helm_name, "digest"))["image"]
        == f"registry.example.com/group/flask-example-1@{digest}"
    )
    # Both set: the digest wins and the tag is not in the reference.
    image = container(render(helm_name, "full"))["image"]
    assert image.endswith("@sha256:" + "89abcdef01234567" * 4)
    assert ":1.0.0" not in image
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert values["image"]["tag"] == chart["appVersion"], (
        "values.yaml image.tag must follow appVersion"
    )


def test_autoscaling_owns_replicas(helm_name: str) -> None:
    assert one(render(helm_name), "Deployment")["spec"]["replicas"] == 2
    objects = render(helm_name, "autoscaling")
    assert "replicas" not in one(objects, "Deployment")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(objects, "Deployment")["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "25%"


def test_optional_resources_are_off_by_default(helm_name: str) -> None:
    # The PodDisruptionBudget is on: the default runs two pods.
    kinds = sorted(o["kind"] for o in render(helm_name))
    assert kinds == ["Deployment", "Pod", "PodDisruptionBudget", "Service"]


def test_no_service_means_no_test_pod_and_own_account(helm_name: str) -> None:
    objects = render(helm_name, "no-service")
    assert sorted(o["kind"] for o in objects) == ["Deployment", "ServiceAccount"]
    account = one(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("case", [*MATRIX, *PIPELINE_CASES])
def test_selectors(helm_name: str, case: str) -> None:
    """Service, PDB, NetworkPolicy and ServiceMonitor select the server pods, never the test pod."""
    objects = render(helm_name, case)
    deployment = one(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    selectors = [o["spec"]["selector"] for o in find(objects, "Service")]
    selectors += [
        o["spec"]["selector"]["matchLabels"] for o in find(objects, "PodDisruptionBudget")
    ]
    selectors += [o["spec"]["podSelector"]["matchLabels"] for o in find(objects, "NetworkPolicy")]
    selectors += [o["spec"]["selector"]["matchLabels"] for o in find(objects, "ServiceMonitor")]
    assert all(s == selector for s in selectors)
    for test_pod in find(objects, "Pod"):
        assert not selector.items() <= test_pod["metadata"]["labels"].items()
    for policy in find(objects, "NetworkPolicy"):
        assert admits(policy, proving_pod(objects)), "the NetworkPolicy must let the test pod in"
        for denied in denied_pods(objects):
            assert not admits(policy, denied), "the denied test pod must be one it keeps out"


def admits(policy: dict, pod: dict) -> bool:
    """Whether a NetworkPolicy's ingress peers (matchLabels only) admit a pod of its namespace."""
    namespace_labels = {"kubernetes.io/metadata.name": pod["metadata"]["namespace"]}
    labels = pod["metadata"]["labels"].items()
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    if not peers:
        return True
    for peer in peers:
        assert set(peer) <= {"podSelector", "namespaceSelector"}, f"cannot judge {peer}"
        pods = peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels
        # Without a namespaceSelector a podSelector means the policy's own namespace.
        namespaces = "namespaceSelector" not in peer or (
            peer["namespaceSelector"].get("matchLabels", {}).items() <= namespace_labels.items()
        )
        if pods and namespaces:
            return True
    return False


def test_recommended_labels(helm_name: str) -> None:
    for obj in render(helm_name, "full"):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "flask-example-1-1.0.0"
        assert obj["metadata"]["namespace"] == NAMESPACE
        if obj["kind"] != "Pod":
            assert labels["app.kubernetes.io/version"] == "1.0.0"


def test_selector_stable_across_chart_and_app_versions(helm_name: str, tmp_path: Path) -> None:
    """A new chart or app version keeps every selector (a Deployment's is immutable)."""
    bumped = tmp_path / "chart"
    shutil.copytree(CHART, bumped)
    chart_yaml = yaml.safe_load((bumped / "Chart.yaml").read_text())
    chart_yaml.update(version="2.3.4", appVersion="9.9.9")
    (bumped / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
    args = ["--namespace", NAMESPACE, "--values", str(CHART / "ci" / "full-values.yaml")]
    result = helm(helm_name, "template", RELEASE, str(bumped), *args)
    assert result.returncode == 0, result.stderr
    new = [d for d in yaml.safe_load_all(result.stdout) if d]
    old = render(helm_name, "full")

    def selectors(objects: list[dict]) -> dict:
        return {
            (o["kind"], o["metadata"]["name"]): o["spec"].get("selector")
            or o["spec"].get("podSelector")
            for o in objects
            if "spec" in o and ("selector" in o["spec"] or "podSelector" in o["spec"])
        }

    assert selectors(new) == selectors(old)
    assert one(new, "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"] == "9.9.9"


LONG_RELEASE = "a-very-long-release-name-for-the-review-app-feature-x"


@pytest.mark.parametrize("case", ["full", "tls-certificate"])
def test_names_fit_63_characters_with_a_long_release(helm_name: str, case: str) -> None:
    assert len(LONG_RELEASE) == 53, "Helm's own limit for a release name"
    objects = render(helm_name, case, release=LONG_RELEASE)
    names = set()
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63, name
        assert not name.endswith("-"), name
        names.add((obj["kind"], name))
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63, value
    assert len(names) == len(objects)
    for cert in find(objects, "Certificate"):
        assert len(cert["spec"]["secretName"]) <= 63
        for dns_name in cert["spec"]["dnsNames"]:
            assert all(len(label) <= 63 for label in dns_name.split(".")), dns_name


def test_test_pod_checks_readyz_through_the_service(helm_name: str) -> None:
    objects = render(helm_name, "tls-certificate")
    test_pod = proving_pod(objects)
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    ctr = test_pod["spec"]["containers"][0]
    assert ctr["image"] == container(objects)["image"]
    options = probe_options(test_pod)
    assert options["path"] == "/readyz"
    service = one(objects, "Service")
    assert options["host"] == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert options["port"] == str(service["spec"]["ports"][0]["port"])
    (volume,) = (v["secret"] for v in test_pod["spec"]["volumes"] if v["name"] == "tls")
    assert volume["defaultMode"] == 0o440
    assert "tls-server-name" not in probe_options(proving_pod(render(helm_name)))
