"""The Ingress's verify depth accepts the chains private issuers sign, as nginx counts it.

nginx's proxy_ssl_verify_depth is OpenSSL's verify depth, which `openssl verify -verify_depth`
applies the same way: it counts the CA certificates between the leaf and the trust anchor.
Real chains made with openssl: root -> intermediate -> leaf (step-ca, a Vault intermediate
mount) verifies at depth 1 already; root -> intermediate -> issuing intermediate -> leaf (Vault
with a separate issuing mount) needs 2, the chart's default, and fails at ingress-nginx's 1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.chart.chartlib import one, render


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run openssl in cwd; the result, checked by the caller."""
    return subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def make_ca(cwd: Path, name: str, issuer: str | None) -> None:
    """name.key and name.crt, a CA signed by issuer (self-signed when None)."""
    ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
    (cwd / f"{name}.ext").write_text(ext)
    args = ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    args += ["-keyout", f"{name}.key", "-subj", f"/CN={name}"]
    if issuer is None:
        args += ["-x509", "-days", "1", "-out", f"{name}.crt", "-addext", ext.splitlines()[0]]
        args += ["-addext", ext.splitlines()[1]]
        assert openssl(*args, cwd=cwd).returncode == 0
        return
    assert openssl(*args, "-out", f"{name}.csr", cwd=cwd).returncode == 0
    sign = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key"]
    sign += ["-CAcreateserial", "-days", "1", "-out", f"{name}.crt", "-extfile", f"{name}.ext"]
    assert openssl(*sign, cwd=cwd).returncode == 0


def make_leaf(cwd: Path, name: str, issuer: str) -> None:
    """name.crt, a server certificate for a Service name, signed by issuer."""
    (cwd / f"{name}.ext").write_text("subjectAltName=DNS:demo-flask-example-1.flask-test.svc\n")
    args = ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    args += ["-keyout", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr"]
    assert openssl(*args, cwd=cwd).returncode == 0
    sign = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key"]
    sign += ["-CAcreateserial", "-days", "1", "-out", f"{name}.crt", "-extfile", f"{name}.ext"]
    assert openssl(*sign, cwd=cwd).returncode == 0


def verifies(cwd: Path, leaf: str, depth: int, *intermediates: str) -> bool:
    """Whether the leaf, served with its intermediates, verifies against root.crt at depth."""
    args = ["verify", "-verify_depth", str(depth), "-CAfile", "root.crt"]
    if intermediates:
        bundle = cwd / f"{leaf}-chain.crt"
        bundle.write_text("".join((cwd / f"{name}.crt").read_text() for name in intermediates))
        args += ["-untrusted", bundle.name]
    return openssl(*args, f"{leaf}.crt", cwd=cwd).returncode == 0


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root, an intermediate it signs, a leaf of each."""
    cwd = tmp_path_factory.mktemp("chains")
    make_ca(cwd, "root", None)
    make_ca(cwd, "intermediate", "root")
    make_ca(cwd, "issuing", "intermediate")
    make_leaf(cwd, "leaf-of-intermediate", "intermediate")
    make_leaf(cwd, "leaf-of-issuing", "issuing")
    make_leaf(cwd, "leaf-of-root", "root")
    return cwd


def default_depth() -> int:
    """The verify depth the chart renders on its Ingress with TLS and the defaults."""
    ingress = one(render("helm4", "tls-certificate"), "Ingress")
    return int(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-ssl-verify-depth"]
    )


def test_default_depth_accepts_chains_with_up_to_two_intermediates(chains: Path) -> None:
    depth = default_depth()
    assert depth == 2
    assert verifies(chains, "leaf-of-root", depth)
    assert verifies(chains, "leaf-of-intermediate", depth, "intermediate")
    assert verifies(chains, "leaf-of-issuing", depth, "issuing", "intermediate")


def test_depth_one_refuses_two_intermediates_so_the_default_matters(chains: Path) -> None:
    # ingress-nginx's own default: the 502 such an issuer's pods would get.
    assert not verifies(chains, "leaf-of-issuing", 1, "issuing", "intermediate")
    assert verifies(chains, "leaf-of-intermediate", 1, "intermediate")
    # And the check is a real one: a chain without its intermediate never verifies.
    assert not verifies(chains, "leaf-of-intermediate", 2)
