"""The signing input's wiring: the sign and verify jobs under gitlab-ci-local with the
Sigstore stand-in (keyless: GitLab's ID token traded as Fulcio trades it), the one-line
errors when the chosen way lacks what it needs, and the deploy refusing any digest that
docker_builder:verify:job did not verify. The real cosign against the real registry is in
tests/registry/test_supply_chain_real.py; the verify and deploy jobs with the real cosign,
registry and API server in test_pipeline_verified_deploy.py."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import DIGEST, PROJECT, SECRETS, Scratch
from tests.pipeline.pipelinelib import (
    IMAGE,
    SHELLS,
    assert_no_secrets,
    errors,
    id_token,
    registry_variables,
    shell_command,
)

ROOT = Path(__file__).resolve().parents[2]
COSIGN_SH = ROOT / "ci" / "scripts" / "cosign.sh"
SIGN = "docker_builder:sign:job"
VERIFY = "docker_builder:verify:job"
NAMES = {
    "NS": "dev",
    "RELEASE_NAME": f"dev-{PROJECT}",
    "CHANNEL": "dev",
    "IMAGE_TAG": "dev",
    "HOST": f"dev.{PROJECT}.example.com",
}


def test_sign_job_carries_the_sigstore_id_token(scratch: Scratch) -> None:
    """GitLab hands the sign job an ID token for the audience Fulcio requires (sigstore), in
    the variable cosign reads by itself; the verify job needs none."""
    scratch.checkout_branch("main")
    run = scratch.gcl("--preview", variables={"PIPELINE_SIGNING": "keyless"})
    assert run.returncode == 0, run.output
    preview = yaml.safe_load(run.stdout)
    assert preview[SIGN]["id_tokens"] == {"SIGSTORE_ID_TOKEN": {"aud": "sigstore"}}
    assert "id_tokens" not in preview[VERIFY]


@pytest.mark.parametrize(
    ("claims", "refusal"),
    [
        ({}, None),
        ({"aud": "https://gitlab.com"}, 'oidc: expected audience "sigstore"'),
        ({"iss": "https://gitlab.example.com"}, "fulcio: unsupported issuer"),
    ],
    ids=["gitlab-com-token", "wrong-audience", "self-managed-issuer"],
)
def test_keyless_signing_trades_the_id_token_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, claims: dict, refusal: str | None
) -> None:
    """Keyless: cosign signs the pushed index by digest with no key, the token only in its
    environment; a token Fulcio would refuse fails the job with the refusal."""
    fresh_scratch.checkout_branch("dev")
    token = id_token(**claims)
    variables = {
        **registry_variables(tmp_path),
        "PIPELINE_SIGNING": "keyless",
        "PIPELINE_SBOM": "false",  # (the SBOM's attestation: tests/pipeline/test_pipeline_sbom.py)
        "SIGSTORE_ID_TOKEN": token,
    }
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "docker_builder:build:job",
        "docker_builder:push:job",
        SIGN,
        variables=variables,
    )
    [login, sign] = run.tool("cosign")
    assert login["argv"][:2] == ["login", "registry.example.test"]
    assert sign["argv"] == ["sign", "--yes", f"{IMAGE}@{DIGEST}"]
    assert sign["env"]["SIGSTORE_ID_TOKEN"] == token
    if refusal is None:
        assert run.returncode == 0, run.output
    else:
        assert run.returncode != 0
        assert refusal in run.output
        assert errors(run.output) == {
            f"ERROR: cosign could not sign {IMAGE}@{DIGEST}: its error is above"
        }
    assert_no_secrets(run, fresh_scratch, {"SIGSTORE_ID_TOKEN": token})


def test_key_signing_and_verifying_stand_in(fresh_scratch: Scratch, tmp_path: Path) -> None:
    """With a key: the sign job signs the index by digest with the key file (its password
    only in cosign's environment), the verify job checks that digest with the public key and
    hands it to the deploy, which installs that digest."""
    fresh_scratch.checkout_branch("dev")
    key = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----stand-in-key-9d1e"
    (tmp_path / "cosign.key").write_text(key + "\n")
    (tmp_path / "cosign.pub").write_text("stand-in public key\n")
    password = SECRETS["COSIGN_PASSWORD"]
    variables = {
        **registry_variables(tmp_path),
        "PIPELINE_SIGNING": "key",
        "PIPELINE_SIGNING_TLOG": "false",
        "PIPELINE_SBOM": "false",  # (the SBOM's attestation: tests/pipeline/test_pipeline_sbom.py)
        "COSIGN_PRIVATE_KEY": str(tmp_path / "cosign.key"),
        "COSIGN_PUBLIC_KEY": str(tmp_path / "cosign.pub"),
        "COSIGN_PASSWORD": password,
    }
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "docker_builder:build:job",
        "docker_builder:push:job",
        SIGN,
        VERIFY,
        variables=variables,
    )
    assert run.returncode == 0, run.output
    calls = [call["argv"] for call in run.tool("cosign") if call["argv"][0] != "login"]
    assert calls == [
        [
            "sign",
            "--yes",
            "--key",
            str(tmp_path / "cosign.key"),
            "--use-signing-config=false",
            "--tlog-upload=false",
            f"{IMAGE}@{DIGEST}",
        ],
        [
            "verify",
            "--key",
            str(tmp_path / "cosign.pub"),
            "--insecure-ignore-tlog=true",
            f"{IMAGE}@{DIGEST}",
        ],
    ]
    [sign] = [call for call in run.tool("cosign") if call["argv"][0] == "sign"]
    assert sign["env"]["COSIGN_PASSWORD"] == password  # cosign reads it from its environment
    assert_no_secrets(run, fresh_scratch, {"the private key": key})
    dotenv = fresh_scratch.path / ".gitlab-ci-local" / "artifacts"
    [verified] = [p for p in dotenv.rglob("verified.env")]
    assert f"VERIFIED_IMAGE_DIGEST={DIGEST}" in verified.read_text().splitlines()


def cosign_sh(shell: str, mode: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """ci/scripts/cosign.sh MODE in SHELL, with only ENV (and PATH) set."""
    return subprocess.run(
        [*shell_command(shell), str(COSIGN_SH), mode],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **NAMES, **env},
        check=False,
        capture_output=True,
        text=True,
    )


MISSING = [
    ("sign", {"PIPELINE_SIGNING": "key"}, "COSIGN_PRIVATE_KEY is not set"),
    (
        "sign",
        {"PIPELINE_SIGNING": "key", "COSIGN_PRIVATE_KEY": "/nowhere/cosign.key"},
        "COSIGN_PRIVATE_KEY is neither a file nor a KMS URI",
    ),
    (
        "sign",
        {"PIPELINE_SIGNING": "key", "COSIGN_PRIVATE_KEY": "{key}"},
        "COSIGN_PASSWORD is not set",
    ),
    (
        "verify",
        {"PIPELINE_SIGNING": "key", "COSIGN_PRIVATE_KEY": "{key}"},
        "COSIGN_PUBLIC_KEY is not set",
    ),
    ("sign", {"PIPELINE_SIGNING": "keyless"}, "the job has no SIGSTORE_ID_TOKEN"),
    ("sign", {"PIPELINE_SIGNING": "gpg"}, "the signing input is 'gpg', not key, keyless or off"),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("mode", "env", "message"), MISSING)
def test_signing_names_what_it_lacks_in_one_line(
    shell: str, tmp_path: Path, mode: str, env: dict, message: str
) -> None:
    """Each way of signing stops with one line naming the missing piece and where to set it,
    before cosign is called (no cosign on PATH here)."""
    (tmp_path / "cosign.key").write_text("key\n")
    env = {key: value.replace("{key}", str(tmp_path / "cosign.key")) for key, value in env.items()}
    done = cosign_sh(
        shell,
        mode,
        {"IMAGE_REPOSITORY": IMAGE, "IMAGE_DIGEST": DIGEST, **env},
        tmp_path,
    )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("ERROR: ") and message in line


@pytest.mark.parametrize(
    "verified", [None, "sha256:" + "cd34" * 16], ids=["not-verified", "another-digest"]
)
def test_deploy_refuses_a_digest_it_did_not_verify_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, verified: str | None
) -> None:
    """With signing on, helm:deploy:job stops in one line, before any Helm command, unless
    docker_builder:verify:job verified the very digest it would deploy."""
    fresh_scratch.checkout_branch("dev")
    variables = {
        **registry_variables(tmp_path),
        "PIPELINE_SIGNING": "key",
        "IMAGE_REPOSITORY": IMAGE,
        "IMAGE_DIGEST": DIGEST,
    }
    if verified:
        variables["VERIFIED_IMAGE_DIGEST"] = verified
    run = fresh_scratch.gcl("--force-shell-executor", "helm:deploy:job", variables=variables)
    assert run.returncode != 0
    assert errors(run.output) == {
        f"ERROR: image {IMAGE}@{DIGEST} is not the digest docker_builder:verify:job verified"
        f" ({verified or 'none'}): with the signing input key, only a verified image deploys"
    }
    assert run.tool("helm") == []


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_keyless_verification_expects_this_project_s_pipelines_stand_in(
    tmp_path: Path, signed: bool, shell: str
) -> None:
    """Keyless verification asks for a certificate of this GitLab for this project's
    pipelines: Fulcio's identity for GitLab is https:// + the token's ci_config_ref_uri, i.e.
    the project's URL, `//`, the configuration's path and ref. An unsigned digest fails in one
    line naming the digest, the issuer and the identity."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cosign").symlink_to(ROOT / "tests" / "support" / "tool_standin.py")
    record = tmp_path / "record.jsonl"
    record.write_text("")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STANDIN_RECORD": str(record),
        "STANDIN_UNSIGNED": "" if signed else DIGEST,
        "PIPELINE_SIGNING": "keyless",
        "CI_PROJECT_URL": f"https://gitlab.example.com/dev/{PROJECT}",
        "CI_SERVER_URL": "https://gitlab.example.com",
        "CI_REGISTRY": "registry.example.test",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "standin-registry-password-7c3e19",
        "IMAGE_REPOSITORY": IMAGE,
        "IMAGE_DIGEST": DIGEST,
    }
    done = cosign_sh(shell, "verify", env, tmp_path)
    calls = [json.loads(line)["argv"] for line in record.read_text().splitlines()]
    identity = f"^https://gitlab\\.example\\.com/dev/{PROJECT}//"
    assert calls[1:] == [
        [
            "verify",
            "--certificate-identity-regexp",
            identity,
            "--certificate-oidc-issuer",
            "https://gitlab.example.com",
            f"{IMAGE}@{DIGEST}",
        ]
    ]
    # The identity (RE2 and Python agree on this syntax) of this project's pipelines only.
    assert re.match(
        identity, f"https://gitlab.example.com/dev/{PROJECT}//.gitlab-ci.yml@refs/heads/main"
    )
    assert not re.match(
        identity, f"https://gitlab.example.com/dev/{PROJECT}-fork//.gitlab-ci.yml@x"
    )
    assert not re.match(identity, f"https://gitlabXexample.com/dev/{PROJECT}//.gitlab-ci.yml@x")
    if signed:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 1
        [line] = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
        assert line == (
            f"ERROR: image {IMAGE}@{DIGEST} has no valid signature by a certificate of"
            f" https://gitlab.example.com for {identity}: Error: no matching signatures:"
        )
