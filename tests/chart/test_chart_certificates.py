"""Two certificates, two trust domains, in every combination the chart offers.

The pod's certificate (private CA, the Service's in-cluster names, ca.crt in its secret) is
what the ingress and the Gateway verify the pod against; the public host's certificate (the
Ingress's: from a public issuer, an existing secret or the controller's default; the Gateway
listener's on the HTTPRoute path) is what browsers see. Each combination is rendered by real
Helm 3 and 4 and checked for which secret each listener uses and which names each
Certificate requests.
"""

from __future__ import annotations

import pytest

from tests.chart.chartlib import CHART, NAMESPACE, RELEASE, find, helm, one, render

HOST = "app.example.com"
FULLNAME = f"{RELEASE}-flask-example-1"
SERVICE_HOST = f"{FULLNAME}.{NAMESPACE}.svc"
POD_SECRET = f"{FULLNAME}-tls"
SERVICE_NAMES = [
    FULLNAME,
    f"{FULLNAME}.{NAMESPACE}",
    SERVICE_HOST,
    f"{SERVICE_HOST}.cluster.local",
]
ROUTES = {
    "ingress": ("ingress.enabled=true", "ingress.className=external-nginx"),
    "httproute": ("httpRoute.enabled=true", "httpRoute.parentRefs[0].name=public"),
}
# How the Ingress gets the public host's certificate.
PUBLIC = {
    "issuer": ("publicCertificate.enabled=true", "publicCertificate.issuerRef.name=letsencrypt"),
    "existing": ("ingress.tls.secretName=wildcard-example-com-tls",),
    "default": (),
    "off": ("ingress.tls.enabled=false",),
}
POD_TLS = {
    "pod-tls": ("tls.enabled=true", "certificate.enabled=true", "certificate.issuerRef.name=ca"),
    "pod-plain": (),
}
COMBINATIONS = [
    (route, public, pod)
    for route in ROUTES
    for public in PUBLIC
    for pod in POD_TLS
    # The public certificate the chart makes is the Ingress's (the schema refuses it alone with
    # an HTTPRoute, below); ingress.tls does nothing on the Gateway path.
    if route == "ingress" or public in ("default", "off")
]


def render_combination(helm_name: str, route: str, public: str, pod: str) -> list[dict]:
    """The chart rendered with one route, one public-certificate choice and the pod's TLS on/off."""
    sets = (f"host={HOST}", *ROUTES[route], *PUBLIC[public], *POD_TLS[pod])
    return render(helm_name, "default", *(arg for s in sets for arg in ("--set", s)))


def certificates(objects: list[dict]) -> dict[str, dict]:
    """The Certificates' specs by object name."""
    return {c["metadata"]["name"]: c["spec"] for c in find(objects, "Certificate")}


def mounted_pod_secret(objects: list[dict]) -> str | None:
    """The secret the Deployment mounts for the server's TLS, if any."""
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    return next((v["secret"]["secretName"] for v in volumes if v["name"] == "tls"), None)


@pytest.mark.parametrize(("route", "public", "pod"), COMBINATIONS)
def test_each_listener_uses_its_own_certificate(
    helm_name: str, route: str, public: str, pod: str
) -> None:
    objects = render_combination(helm_name, route, public, pod)
    certs = certificates(objects)
    pod_secret = mounted_pod_secret(objects)

    # The pod's certificate: only the Service's names, in the pod's secret, from its own issuer.
    pod_cert = certs.pop(FULLNAME, None)
    if pod == "pod-tls":
        assert pod_secret == POD_SECRET
        assert pod_cert is not None
        assert pod_cert["dnsNames"] == SERVICE_NAMES
        assert pod_cert["secretName"] == POD_SECRET
        assert pod_cert["issuerRef"]["name"] == "ca"
    else:
        assert pod_secret is None
        assert pod_cert is None

    # The public host's certificate: the Ingress's, never in the pod's secret.
    public_cert = certs.pop(f"{FULLNAME}-public", None)
    assert certs == {}, f"unexpected Certificates {sorted(certs)}"
    if public == "issuer":
        assert public_cert is not None
        assert public_cert["dnsNames"] == [HOST]
        assert public_cert["issuerRef"]["name"] == "letsencrypt"
        assert public_cert["secretName"] == f"{FULLNAME}-public-tls"
    else:
        assert public_cert is None

    if route == "ingress":
        ingress = one(objects, "Ingress")
        expected_tls = {
            "issuer": [{"hosts": [HOST], "secretName": f"{FULLNAME}-public-tls"}],
            "existing": [{"hosts": [HOST], "secretName": "wildcard-example-com-tls"}],
            # No secretName: the controller's default certificate.
            "default": [{"hosts": [HOST]}],
            "off": None,
        }[public]
        assert ingress["spec"].get("tls") == expected_tls
        assert_ingress_verifies_the_pod(ingress, pod)
    else:
        assert find(objects, "Ingress") == []
        assert_gateway_verifies_the_pod(objects, pod)


def assert_ingress_verifies_the_pod(ingress: dict, pod: str) -> None:
    """ingress-nginx verifies the pod against the pod's CA and the Service's name (sent as SNI),
    which the pod's certificate carries; with a plain-HTTP pod there is nothing to verify."""
    annotations = ingress["metadata"].get("annotations", {})
    ssl = {k.removeprefix("nginx.ingress.kubernetes.io/"): v for k, v in annotations.items()}
    if pod == "pod-plain":
        assert not any(k.startswith("proxy-ssl") for k in ssl), ssl
        assert "backend-protocol" not in ssl
        return
    assert ssl["backend-protocol"] == "HTTPS"
    assert ssl["proxy-ssl-verify"] == "on"
    assert ssl["proxy-ssl-secret"] == f"{NAMESPACE}/{POD_SECRET}"
    assert ssl["proxy-ssl-name"] == SERVICE_HOST
    assert ssl["proxy-ssl-name"] in SERVICE_NAMES
    assert ssl["proxy-ssl-server-name"] == "on"


def assert_gateway_verifies_the_pod(objects: list[dict], pod: str) -> None:
    """The Gateway's BackendTLSPolicy: the Service's name and the pod secret's CA. The HTTPRoute
    has no certificate of its own: the public one is the Gateway listener's."""
    route = one(objects, "HTTPRoute")["spec"]
    assert route["hostnames"] == [HOST]
    assert "tls" not in route
    policies = find(objects, "BackendTLSPolicy")
    if pod == "pod-plain":
        assert policies == []
        return
    validation = one(objects, "BackendTLSPolicy")["spec"]["validation"]
    assert validation == {
        "hostname": SERVICE_HOST,
        "caCertificateRefs": [{"group": "", "kind": "Secret", "name": POD_SECRET}],
    }


def test_the_combinations_cover_each_choice() -> None:
    """Every route, every public-certificate choice on the Ingress and the pod's TLS on and off."""
    assert {c[0] for c in COMBINATIONS} == set(ROUTES)
    assert {c[1] for c in COMBINATIONS if c[0] == "ingress"} == set(PUBLIC)
    assert {c[2] for c in COMBINATIONS} == set(POD_TLS)
    assert len(COMBINATIONS) == 12


def test_both_routes_at_once_keep_the_split(helm_name: str) -> None:
    """Ingress and HTTPRoute together: the Ingress gets the public certificate, the Gateway
    none, and both verify the pod by the Service's name against the pod's CA."""
    sets = (
        f"host={HOST}",
        *ROUTES["ingress"],
        *ROUTES["httproute"],
        *PUBLIC["issuer"],
        *POD_TLS["pod-tls"],
    )
    objects = render(helm_name, "default", *(arg for s in sets for arg in ("--set", s)))
    certs = certificates(objects)
    assert {name: c["dnsNames"] for name, c in certs.items()} == {
        FULLNAME: SERVICE_NAMES,
        f"{FULLNAME}-public": [HOST],
    }
    assert one(objects, "Ingress")["spec"]["tls"][0]["secretName"] == f"{FULLNAME}-public-tls"
    assert_ingress_verifies_the_pod(one(objects, "Ingress"), "pod-tls")
    assert_gateway_verifies_the_pod(objects, "pod-tls")


def test_the_public_secret_may_be_named(helm_name: str) -> None:
    """publicCertificate writes the secret ingress.tls.secretName names, as certificate does
    for tls.secretName."""
    sets = (
        f"host={HOST}",
        *ROUTES["ingress"],
        *PUBLIC["issuer"],
        "ingress.tls.secretName=app-public-tls",
    )
    objects = render(helm_name, "default", *(arg for s in sets for arg in ("--set", s)))
    assert certificates(objects)[f"{FULLNAME}-public"]["secretName"] == "app-public-tls"
    assert one(objects, "Ingress")["spec"]["tls"] == [
        {"hosts": [HOST], "secretName": "app-public-tls"}
    ]


@pytest.mark.parametrize("secret", [POD_SECRET, "shared-tls"])
def test_the_pod_secret_is_refused_as_the_public_one(helm_name: str, secret: str) -> None:
    """Naming the pod's secret (derived or existing) for the public host fails with the fix."""
    sets = (
        f"host={HOST}",
        *ROUTES["ingress"],
        "tls.enabled=true",
        f"ingress.tls.secretName={secret}",
    )
    if secret == POD_SECRET:
        sets += ("certificate.enabled=true", "certificate.issuerRef.name=ca")
    else:
        sets += (f"tls.secretName={secret}",)
    args = [arg for s in sets for arg in ("--set", s)]
    result = helm(helm_name, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode != 0
    assert f"ingress.tls.secretName '{secret}' is the pod's TLS secret" in result.stderr
    assert "publicCertificate.enabled" in result.stderr


@pytest.mark.parametrize(
    ("route", "public", "says"),
    [
        ("ingress", "issuer", f"public certificate: secret {FULLNAME}-public-tls, from"),
        ("ingress", "existing", "public certificate: existing secret wildcard-example-com-tls"),
        ("ingress", "default", "public certificate: the ingress controller's default certificate"),
        ("httproute", "default", "public certificate: the Gateway listener's certificateRefs"),
    ],
)
def test_notes_say_where_the_public_certificate_comes_from(
    route: str, public: str, says: str
) -> None:
    sets = (f"host={HOST}", *ROUTES[route], *PUBLIC[public], *POD_TLS["pod-tls"])
    args = [arg for s in sets for arg in ("--set", s)]
    result = helm(
        "helm4", "install", RELEASE, str(CHART), "--dry-run=client", "-n", NAMESPACE, *args
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert says in notes
    assert f"pod's certificate in secret {POD_SECRET} (for {SERVICE_HOST})" in notes
