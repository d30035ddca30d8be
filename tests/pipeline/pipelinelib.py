"""Helpers the pipeline tests share: the component and its jobs, scripts, scenarios and runs."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from hack.cluster import Cluster
from hack.pki import Pki
from tests.pipeline.conftest import (
    DEPLOY_TOKEN,
    DEPLOY_USER,
    DIGEST,
    HELM,
    PROJECT,
    ROOT,
    SECRETS,
    Run,
    Scratch,
    pull_flags,
)
from tests.registry.registrylib import Registry
from tests.support.gitlab_api import GitLab, GitLabStandIn
from tests.support.tool_standin import pushed_digest

LIB = ROOT / "ci" / "scripts" / "lib.sh"
SHELLS = [shell for shell in ("dash", "busybox") if shutil.which(shell)]


def shell_command(shell: str) -> list[str]:
    """How to start SHELL as a POSIX sh."""
    return [shell, "sh"] if shell == "busybox" else [shell]


def short_hash(text: str) -> str:
    """The 8-hex suffix the script must use for TEXT."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def dev_row(branch: str) -> dict:
    """The dev row of the original table as GitLab expands it for BRANCH (the pipeline's
    workflow rule), with prod's CHANNEL and IMAGE_TAG beside it."""
    return {
        "CI_COMMIT_BRANCH": branch,
        "NS": "dev",
        "RELEASE_NAME": f"{branch}-{PROJECT}",
        "CHANNEL": branch,
        "IMAGE_TAG": branch,
        "HOST": f"{branch}.{PROJECT}.fzen.pro",
        "PROD_CHANNEL": "release",
        "PROD_IMAGE_TAG": "latest",
    }


DEPLOY_ENV = {
    "NS": "dev",
    "RELEASE_NAME": "dev-flask-example-1",
    "CHANNEL": "dev",
    "IMAGE_TAG": "dev",
    "HOST": "dev.flask-example-1.fzen.pro",
    "CI_REGISTRY_IMAGE": "registry.example.test/dev/flask-example-1",
    "CI_PROJECT_PATH_SLUG": "dev-flask-example-1",
    "INGRESS_CLASS_NAME": "internal-nginx",
    "CERTIFICATE_ISSUER_NAME": "private-ca",
}


def run_script(shell: str, name: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run ci/scripts/NAME in SHELL in CWD with DEPLOY_ENV updated by ENV."""
    return subprocess.run(
        [*shell_command(shell), ROOT / "ci" / "scripts" / name],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **DEPLOY_ENV, **env},
        capture_output=True,
        text=True,
        check=False,
    )


# The original project's variables table, for this project (CI_PROJECT_NAME flask-example-1).
PROD = {
    "NS": "prod",
    "RELEASE_NAME": PROJECT,
    "CHANNEL": "release",
    "KUBE_CONTEXT": "dev/kubernetes-agent-config:kubernetes-agent-prod",
    "IMAGE_TAG": "latest",
    "INGRESS_CLASS_NAME": "external-nginx",
    "HOST": f"{PROJECT}.fzen.pro",
}


DEV_BRANCH = {  # a branch that is a DNS label: exactly the original table's values
    "NS": "dev",
    "RELEASE_NAME": f"dev-{PROJECT}",
    "CHANNEL": "dev",
    "KUBE_CONTEXT": "dev/kubernetes-agent-config:kubernetes-agent-dev",
    "IMAGE_TAG": "dev",
    "INGRESS_CLASS_NAME": "internal-nginx",
    "HOST": f"dev.{PROJECT}.fzen.pro",
}


FEATURE_BRANCH = {  # feature/Login_Form is no DNS label: its slug stands in
    **DEV_BRANCH,
    "RELEASE_NAME": f"feature-login-form-{PROJECT}",
    "CHANNEL": "feature-login-form",
    "IMAGE_TAG": "feature-login-form",
    "HOST": f"feature-login-form.{PROJECT}.fzen.pro",
}


BUILD_PUSH_DEPLOY = {
    "app:test:job": set(),
    "docker_builder:build:job": set(),
    "helm_builder:test:config:job": set(),
    "helm_builder:test:deploy:job": set(),
    "helm_builder:build:job": {"helm_builder:test:config:job", "helm_builder:test:deploy:job"},
    "docker_builder:push:job": {"docker_builder:build:job", "app:test:job"},
    "docker_builder:sbom:job": {"docker_builder:push:job"},
    "helm_builder:push:job": {"helm_builder:build:job"},
    "helm:preflight:job": set(),
    # (docker_builder:verify:job, an optional need, runs only with the signing input on.)
    "helm:deploy:job": {
        "docker_builder:push:job",
        "docker_builder:verify:job",
        "helm_builder:push:job",
        "helm:preflight:job",
    },
}


REVIEW = {**BUILD_PUSH_DEPLOY, "helm:stop:job": {"helm:deploy:job"}}


MERGE = {**BUILD_PUSH_DEPLOY, "auto:merge:job": {"helm:deploy:job"}}


@dataclass
class Scenario:
    """A pipeline: the ref it runs on, what GitLab would set, and what must come out."""

    ref: str
    expected: dict | None
    jobs: dict = field(default_factory=dict)
    tag: bool = False
    variables: dict = field(default_factory=dict)
    unset: tuple = ()


SCENARIOS = {
    "push main": Scenario("main", PROD, BUILD_PUSH_DEPLOY),
    "push dev": Scenario("dev", DEV_BRANCH, REVIEW),
    "push feature/Login_Form": Scenario("feature/Login_Form", FEATURE_BRANCH, REVIEW),
    "push protected branch": Scenario(
        "release-2", PROD, BUILD_PUSH_DEPLOY, variables={"CI_COMMIT_REF_PROTECTED": "true"}
    ),
    "merge request": Scenario(
        "feature/Login_Form",
        PROD,
        MERGE,
        variables={"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "7"},
        unset=("CI_COMMIT_BRANCH",),  # GitLab leaves it empty in merge request pipelines
    ),
    "web": Scenario(
        "feature/Login_Form", PROD, BUILD_PUSH_DEPLOY, variables={"CI_PIPELINE_SOURCE": "web"}
    ),
    "unprotected tag": Scenario(
        "v1.0.0", None, tag=True, variables={"CI_COMMIT_TAG": "v1.0.0"}, unset=("CI_COMMIT_BRANCH",)
    ),
    # Run by hand on an unprotected tag: still no pipeline (a web run is otherwise prod).
    "web on unprotected tag": Scenario(
        "v1.0.0",
        None,
        tag=True,
        variables={"CI_COMMIT_TAG": "v1.0.0", "CI_PIPELINE_SOURCE": "web"},
        unset=("CI_COMMIT_BRANCH",),
    ),
    "protected tag": Scenario(
        "v1.0.0",
        PROD,
        BUILD_PUSH_DEPLOY,
        tag=True,
        variables={"CI_COMMIT_TAG": "v1.0.0", "CI_COMMIT_REF_PROTECTED": "true"},
        unset=("CI_COMMIT_BRANCH",),
    ),
}


COMPONENT = ROOT / "templates" / "pipeline" / "template.yml"


def component_documents() -> tuple[str, str]:
    """The component's two YAML documents: the `spec` header and the pipeline."""
    header, body = COMPONENT.read_text().split("\n---\n", 1)
    return header, body


def readme_graph() -> tuple[set, set]:
    """Job names and edges of the mermaid graph in the README's pipeline section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- section:pipeline -->")[1].split("<!-- /section:pipeline -->")[0]
    graph = section.split("```mermaid")[1].split("```")[0]
    names = {node: label.split()[0] for node, label in re.findall(r"(\w+)\[([^\]]+)\]", graph)}
    edges = set()
    for source, target in re.findall(r"(\w+)(?:\[[^\]]*\])?\s*-->\s*(\w+)", graph):
        edges.add((names[source], names[target]))
    return set(names.values()), edges


REGISTRY = "registry.example.test"
IMAGE = f"{REGISTRY}/dev/{PROJECT}"
IMAGE_JOBS = ("docker_builder:build:job", "docker_builder:push:job")
PLATFORMS = ("linux/amd64", "linux/arm64")
CHART_JOBS = ("helm_builder:test:config:job", "helm_builder:build:job", "helm_builder:push:job")


def registry_variables(tmp_path: Path) -> dict:
    """What GitLab gives a job for the project's container registry (made-up password)."""
    return {
        "CI_REGISTRY": REGISTRY,
        "CI_REGISTRY_IMAGE": IMAGE,
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": SECRETS["CI_REGISTRY_PASSWORD"],
        "CI_JOB_TOKEN": SECRETS["CI_JOB_TOKEN"],
        "DOCKER_CONFIG": str(tmp_path / "kaniko-docker"),
        **DEPLOY_TOKEN,
    }


def base64_forms(secret: str) -> set[str]:
    """SECRET as it shows inside any base64 text (a docker config, a Secret's data), at each
    of the three byte alignments: the characters that depend on SECRET's bytes alone."""
    raw = secret.encode()
    forms = set()
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        forms.add(encoded[(pad * 4 + 2) // 3 : (pad + len(raw)) // 3 * 4])
    return forms


def assert_no_secrets(run: Run, scratch: Scratch, extra: dict | None = None) -> None:
    """No made-up secret (SECRETS and EXTRA ones), plain or base64-encoded, in the output,
    job logs or artifacts."""
    texts = {"gitlab-ci-local output": run.output}
    state = scratch.path / ".gitlab-ci-local"
    for folder in ("output", "artifacts"):
        for path in (state / folder).rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for name, secret in {**SECRETS, **(extra or {})}.items():
        forms = {secret, base64.b64encode(f"gitlab-ci-token:{secret}".encode()).decode()}
        forms |= base64_forms(secret) | base64_forms(f"{DEPLOY_USER}:{secret}")
        for where, text in texts.items():
            for form in forms:
                assert form not in text, f"{name} leaked into {where}"


def assert_deploy_token_came_in_private_files(call: dict) -> None:
    """The deploy token reached the recorded helm CALL in files of the job's private Helm
    home, outside the project (no artifact can hold them), gone when the job ended."""
    pull = call["set_files"]
    assert {key: value["text"] for key, value in pull.items()} == {
        "pullSecret.username": DEPLOY_USER,
        "pullSecret.password": SECRETS["CI_DEPLOY_PASSWORD"],
    }
    for value in pull.values():
        assert not Path(value["path"]).is_relative_to(call["cwd"])
        assert not Path(value["path"]).exists()


def render_deployed(helm: int, call: dict, folder: Path, *args: str) -> str:
    """Real `helm template ARGS` in the recorded CALL's directory with its deploy values and
    the values its --set-file files held (gone with the job), from copies in FOLDER."""
    folder.mkdir()
    flags = []
    for key, value in call["set_files"].items():
        (folder / key).write_text(value["text"])
        flags.append(f"--set-file={key}={folder / key}")
    return subprocess.run(
        [HELM[helm], "template", *args, *flags, "--values", "build/values/deploy.yaml"],
        cwd=call["cwd"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def assert_pods_pull_with_the_release_secret(rendered: str) -> dict:
    """In RENDERED manifests, every pod (the server's and the test pod) pulls with the one
    dockerconfigjson Secret, an ordinary release object (no hook, not kept), which is what
    `helm uninstall` removes with the release; returns that Secret."""
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    [secret] = [obj for obj in objects if obj["kind"] == "Secret"]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    annotations = secret["metadata"].get("annotations", {})
    assert "helm.sh/hook" not in annotations
    assert "helm.sh/resource-policy" not in annotations
    pods = [obj["spec"]["template"]["spec"] for obj in objects if obj["kind"] == "Deployment"]
    pods += [obj["spec"] for obj in objects if obj["kind"] == "Pod"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]
    return secret


def commit(scratch: Scratch) -> tuple[str, str]:
    """The scratch repository's HEAD commit, long and short."""
    sha = scratch.git("rev-parse", "HEAD").strip()
    return sha, sha[:8]


def build_job(platform: str) -> str:
    """gitlab-ci-local's name of the build job of PLATFORM (the matrix values, in order)."""
    tag = {"linux/amd64": "docker-builder", "linux/arm64": "docker-builder-arm64"}[platform]
    return f"docker_builder:build:job: [{platform},{tag}]"


def check_image_build_and_push(
    scratch: Scratch,
    tmp_path: Path,
    insecure: bool,
    platforms: tuple = PLATFORMS,
    arm64: str = "true",
) -> Run:
    """Run the image jobs in SCRATCH and check every call kaniko's and crane's stand-ins got."""
    scratch.checkout_branch("feature/Login_Form")
    sha, short = commit(scratch)
    variables = {**registry_variables(tmp_path), "PIPELINE_BUILD_ARM64": arm64}
    if insecure:
        variables.update(INSECURE_REGISTRY="true", PIPELINE_DEBUG="true")
    # (gitlab-ci-local runs a job named on its command line whatever its rules say: the
    # build jobs the pipeline has are named one by one; the matrix test checks the rules.)
    jobs = [*(build_job(platform) for platform in platforms), "docker_builder:push:job"]
    run = scratch.gcl("--force-shell-executor", *jobs, variables=variables)
    assert run.returncode == 0, run.output

    builds = run.tool("executor")
    assert sorted(
        build["argv"][build["argv"].index("--custom-platform") + 1] for build in builds
    ) == sorted(platforms)
    for build in builds:
        platform = build["argv"][build["argv"].index("--custom-platform") + 1]
        assert (build["env"]["PLATFORM"], build["env"]["RUNNER_TAG"]) == (
            platform,
            build_job(platform).split(",")[1].rstrip("]"),
        )
        if shutil.which("busybox"):
            assert Path(build["caller"]).name == "busybox", "the script ran in BusyBox sh"
        project_dir = build["env"]["CI_PROJECT_DIR"]
        assert build["argv"] == [
            "--context",
            project_dir,
            "--dockerfile",
            f"{project_dir}/Dockerfile",
            "--destination",
            f"{IMAGE}:feature-login-form",
            "--no-push",
            "--custom-platform",
            platform,
            "--tar-path",
            f"build/images/{platform.removeprefix('linux/')}.tar",
            "--cache=true",
            "--cache-repo",
            f"{IMAGE}/cache",
            "--build-arg",
            f"APP_VERSION={short}",
            "--build-arg",
            f"APP_COMMIT={sha}",
            "--build-arg",
            "APP_BRANCH=feature/Login_Form",
            "--build-arg",
            f"BUILD_DATE={build['env']['CI_COMMIT_TIMESTAMP']}",
            "--build-arg",
            f"SOURCE_URL=https://gitlab.example.com/dev/{PROJECT}",
            # PIPELINE_DEBUG never raises kaniko's own verbosity (its debug log is not secret-safe).
            *(["--skip-tls-verify", "--skip-tls-verify-pull"] if insecure else []),
        ]
        assert not [arg for arg in build["argv"] if arg.startswith("--verbosity")]
        auth = json.loads(build["docker_config"])["auths"][REGISTRY]["auth"]
        assert (
            base64.b64decode(auth).decode() == f"gitlab-ci-token:{SECRETS['CI_REGISTRY_PASSWORD']}"
        )
    assert ("debug: names: NS=dev" in run.output) == insecure
    assert ("WARNING: TLS verification is off" in run.output) == insecure
    assert (Path(variables["DOCKER_CONFIG"]) / "config.json").stat().st_mode & 0o077 == 0

    flags = ["--insecure"] if insecure else []
    login, *pushes, index, tag = run.tool("crane")
    assert login["argv"] == [
        "auth",
        "login",
        REGISTRY,
        "--username",
        "gitlab-ci-token",
        "--password-stdin",
    ]
    assert login["stdin"] == SECRETS["CI_REGISTRY_PASSWORD"]
    # Each platform's image under <commit>-<arch>; the index under the immutable full
    # commit SHA (short SHAs can collide), then IMAGE_TAG on the index's digest.
    arches = sorted(platform.removeprefix("linux/") for platform in platforms)
    assert [push["argv"] for push in pushes] == [
        ["push", *flags, f"build/images/{arch}.tar", f"{IMAGE}:{sha}-{arch}"] for arch in arches
    ]
    manifests = []
    for arch in arches:
        manifests += ["--manifest", f"{IMAGE}@{pushed_digest(f'{IMAGE}:{sha}-{arch}')}"]
    assert index["argv"] == [
        "index",
        "append",
        *flags,
        "--docker-empty-base",
        *manifests,
        "--tag",
        f"{IMAGE}:{sha}",
    ]
    assert tag["argv"] == ["tag", *flags, f"{IMAGE}@{DIGEST}", "feature-login-form"]
    assert_no_secrets(run, scratch)
    return run


DEPLOYS = [
    {
        "ref": "feature/Login_Form",
        "helm": 4,
        "release": f"feature-login-form-{PROJECT}",
        "ns": "dev",
        "channel": "feature-login-form",
        "context": "dev/kubernetes-agent-config:kubernetes-agent-dev",
        "host": f"feature-login-form.{PROJECT}.fzen.pro",
        "tag": "feature-login-form",
        "ingress": "internal-nginx",
        "rollback": "--rollback-on-failure",
    },
    {
        "ref": "main",
        "helm": 3,
        "release": PROJECT,
        "ns": "prod",
        "channel": "release",
        "context": "dev/kubernetes-agent-config:kubernetes-agent-prod",
        "host": f"{PROJECT}.fzen.pro",
        "tag": "latest",
        "ingress": "external-nginx",
        "rollback": "--atomic",
    },
]


def check_chart_publish_and_deploy(
    scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, expected: dict, verify_url: str
) -> Run:
    """Run the image, chart and deploy jobs in SCRATCH, real Helm on the chart, and check
    the upload, the deployed chart and values, helm test, verify and the stop job."""
    scratch.checkout_branch(expected["ref"])
    helm = expected["helm"]
    sha, short = commit(scratch)
    variables = {
        **registry_variables(tmp_path),
        "CI_API_V4_URL": gitlab.url,
        "VERIFY_URL": verify_url,
    }
    jobs = [*IMAGE_JOBS, *CHART_JOBS, "helm:deploy:job"]
    if expected["ns"] == "dev":
        jobs += ["helm:stop:job", "--manual", "helm:stop:job"]
    run = scratch.gcl("--force-shell-executor", *jobs, variables=variables, helm=helm)
    assert run.returncode == 0, run.output
    assert_no_secrets(run, scratch)

    # helm_builder:test:config:job kept the rendered manifests of the pipeline's tier.
    rendered = scratch.path / ".gitlab-ci-local" / "artifacts"
    assert list(rendered.rglob(f"pipeline-{expected['ns']}.yaml"))

    # helm_builder:push:job: one upload, basic auth with the job token, to the channel.
    [upload] = [r for r in gitlab.state.requests if r.method == "POST"]
    assert upload.path == f"/api/v4/projects/1217/packages/helm/api/{expected['channel']}/charts"
    token = base64.b64encode(f"gitlab-ci-token:{SECRETS['CI_JOB_TOKEN']}".encode()).decode()
    assert upload.headers["Authorization"] == f"Basic {token}"
    [(channel, package)] = gitlab.state.charts
    archive, chart = gitlab.state.charts[(channel, package)]
    assert channel == expected["channel"]
    # (A short id that reads as a number goes in full: test_pipeline_gitlab_standin.py.)
    assert chart["appVersion"] in (short, sha)

    # helm:deploy:job: exactly that version, from the registry, with the pushed digest.
    upgrade = next(c for c in run.tool("helm") if c["argv"][0] == "upgrade")
    iid = upgrade["env"]["CI_PIPELINE_IID"]
    assert chart["version"].endswith(f"-{iid}")
    deployed_chart = f"build/deploy/{PROJECT}-{chart['version']}.tgz"
    assert upgrade["argv"] == [
        "upgrade",
        "--install",
        expected["release"],
        deployed_chart,
        "--namespace",
        expected["ns"],
        "--kube-context",
        expected["context"],
        "--wait",
        "--timeout",
        "5m",
        expected["rollback"],
        *pull_flags(upgrade),
        "--values",
        "build/values/deploy.yaml",
    ]
    workdir = Path(upgrade["cwd"])
    assert (workdir / deployed_chart).read_bytes() == archive
    assert_deploy_token_came_in_private_files(upgrade)
    values = yaml.safe_load((workdir / "build/values/deploy.yaml").read_text())
    assert values == {
        "image": {"repository": IMAGE, "tag": expected["tag"], "digest": DIGEST},
        "pullSecret": {"create": True, "registry": REGISTRY},
        "host": expected["host"],
        "channel": expected["channel"],
        "service": {"enabled": True},
        "ingress": {"enabled": True, "className": expected["ingress"], "tls": {"enabled": True}},
        "tls": {"enabled": True},
        "certificate": {
            "enabled": True,
            "issuerRef": {
                "name": "private-ca",
                "kind": "ClusterIssuer",
                "group": "cert-manager.io",
            },
        },
        "podAnnotations": {
            "app.gitlab.com/app": f"dev-{PROJECT}",
            "app.gitlab.com/env": upgrade["env"]["CI_ENVIRONMENT_SLUG"],
        },
    }
    # The chart accepts these values (schema included), as the cluster would; with the
    # credential Helm got, every pod pulls with the release's own pull Secret.
    rendered = render_deployed(
        helm, upgrade, tmp_path / "credential", expected["release"], deployed_chart
    )
    assert_pods_pull_with_the_release_secret(rendered)
    # The public host is not served with the pod's certificate (no public issuer input: the
    # ingress controller's default certificate, a tls entry without secretName).
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    [certificate] = [o for o in objects if o["kind"] == "Certificate"]
    assert ingress["spec"]["tls"] == [{"hosts": [expected["host"]]}]
    assert certificate["spec"]["secretName"] != ingress["spec"]["tls"][0].get("secretName")
    dotenv = (workdir / "build/deploy.env").read_text().splitlines()
    assert dotenv == [f"DYNAMIC_ENVIRONMENT_URL=https://{expected['host']}"]

    [helm_test] = [c["argv"] for c in run.tool("helm") if c["argv"][0] == "test"]
    assert helm_test == [
        "test",
        expected["release"],
        "--namespace",
        expected["ns"],
        "--kube-context",
        expected["context"],
        # Helm 3 fails reading the logs of the test pod it deleted (helm/helm#9098)
        *(["--logs"] if helm == 4 else []),
        "--timeout",
        "5m",
    ]
    check_verify(run, scratch, workdir, expected, verify_url)
    uninstall = [c["argv"] for c in run.tool("helm") if c["argv"][0] == "uninstall"]
    if expected["ns"] == "dev":
        assert uninstall == [
            [
                "uninstall",
                expected["release"],
                "--namespace",
                "dev",
                "--kube-context",
                expected["context"],
                "--wait",
                "--ignore-not-found",
            ]
        ]
    else:
        assert uninstall == []
    return run


def check_verify(run: Run, scratch: Scratch, workdir: Path, expected: dict, url: str) -> None:
    """verify (default `review`): the prober's table in the log, its JSON kept, dev only."""
    proved = workdir / "build" / "verify" / "prove.json"
    if expected["ns"] == "dev":
        results = json.loads(proved.read_text())
        assert results["failures"] == [], results
        assert results["status_passthrough"] == {"301": True, "404": True, "500": True, "503": True}
        assert "result: pass" in run.output
        assert f"verified {url}: build/verify/prove.json" in run.output
        assert json.loads(kept_prove_json(scratch).read_text()) == results
    else:
        # (The shared scratch directory may hold an earlier dev run's file.)
        assert "prove.py" not in run.output


def kept_prove_json(scratch: Scratch) -> Path:
    """The prober's JSON among the artifacts gitlab-ci-local kept of helm:deploy:job."""
    # gitlab-ci-local spells each ':' of a job's name as 'Og' in its artifacts folder.
    kept = scratch.path / ".gitlab-ci-local" / "artifacts" / "helmOgdeployOgjob"
    return kept / "build" / "verify" / "prove.json"


class GitLabLoader(yaml.SafeLoader):
    """YAML with GitLab's !reference tag, read as the list it holds."""


def readme_includes() -> dict[str, dict]:
    """The README's fenced YAML snippets that include the component, by form ("component"
    or "project"), each as parsed from the README's text as it stands."""
    readme = (ROOT / "README.md").read_text()
    found = {}
    for _indent, body in re.findall(r"^( *)```yaml\n(.*?)^\1```$", readme, re.M | re.S):
        # (A snippet may hold several documents, e.g. Kubernetes manifests.)
        for config in yaml.load_all(textwrap.dedent(body), Loader=GitLabLoader):
            includes = config.get("include") if isinstance(config, dict) else None
            for include in includes or []:
                for form in ("component", "project"):
                    if form in include:
                        assert form not in found, f"two README snippets include by {form}"
                        found[form] = {"text": textwrap.dedent(body), "include": include}
    return found


def id_token(**claims: str) -> str:
    """A JWT shaped like GitLab's ID token for this project (unsigned: the stand-in cannot
    check GitLab's signature), with CLAIMS over the defaults."""
    body = {
        "iss": "https://gitlab.com",
        "aud": "sigstore",
        "ci_config_ref_uri": f"gitlab.com/dev/{PROJECT}//.gitlab-ci.yml@refs/heads/main",
        **claims,
    }

    def encode(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    return f"{encode({'alg': 'RS256', 'typ': 'JWT'})}.{encode(body)}.c2lnbmF0dXJl"


def errors(output: str) -> set:
    """The ERROR lines of a run, without gitlab-ci-local's job prefix."""
    return {line.split("> ", 1)[-1] for line in output.splitlines() if "ERROR: " in line}


HINT = (
    "set the CI/CD variable PIPELINE_CA_FILE (type File) to the PEM bundle of the CAs of GitLab,"
    " its registry and KAS, or give the runner tls-ca-file (it hands jobs CI_SERVER_TLS_CA_FILE)"
)


def x509_line(where: str) -> str:
    """The job's last line when WHERE's certificate is signed by a CA it was not given."""
    return f"ERROR: x509: certificate signed by unknown authority at {where}: {HINT}"


TIERS = {
    # helm major -> (branch, namespace, release): Helm 4 deploys a review branch to dev,
    # Helm 3.17 deploys main to prod, as DEPLOYS do.
    4: ("feature/Login_Form", "dev", f"feature-login-form-{PROJECT}"),
    3: ("main", "prod", PROJECT),
}


@dataclass
class RealPipeline:
    """A scratch repository whose `helm` is the real one of one major version, the cluster
    and the GitLab stand-in: runs jobs as one pipeline each."""

    scratch: Scratch
    cluster: Cluster
    gitlab: GitLabStandIn
    tmp_path: Path
    helm: int
    verify_url: str
    ca_bundle: Path

    @property
    def tier(self) -> tuple[str, str, str]:
        """(branch, namespace, release) of this Helm's tier."""
        return TIERS[self.helm]

    def run(self, *jobs: str, **variables: str) -> Run:
        """Run jobs as one pipeline, with the kubeconfig GitLab writes for the agents where
        GitLab puts it, and the CA bundle of the API server (KAS here) and the GitLab API."""
        with self.cluster.playing_cert_manager(self.tier[1]):
            run = self.scratch.gcl(
                "--force-shell-executor",
                *jobs,
                variables={
                    **registry_variables(self.tmp_path),
                    "CI_API_V4_URL": self.gitlab.url,
                    "KUBECONFIG": str(self.cluster.gitlab_kubeconfig),
                    "PIPELINE_CA_FILE": str(self.ca_bundle),
                    # the pods are simulated: the deploy's prober verifies a real server
                    # standing in for the environment's host
                    "VERIFY_URL": self.verify_url,
                    **variables,
                },
                helm=self.helm,
            )
        assert_no_secrets(run, self.scratch)
        tokens = yaml.safe_load(self.cluster.gitlab_kubeconfig.read_text())["users"]
        for user in tokens:
            assert user["user"]["token"] not in run.output, "an agent token reached the log"
        return run


@pytest.fixture
def gitlab(gitlab_ca: Pki) -> Iterator[GitLabStandIn]:
    """The GitLab API stand-in over HTTPS, its certificate from a private CA."""
    tls = gitlab_ca.issue("gitlab", "127.0.0.1", sans=("127.0.0.1",))
    state = GitLab(job_token=SECRETS["CI_JOB_TOKEN"], api_token=SECRETS["AUTO_MERGE_TOKEN"])
    with GitLabStandIn(state, tls) as server:
        yield server


def history(cluster: Cluster, release: str, namespace: str) -> list[tuple[int, str]]:
    """The release's revisions and their status, as Helm stores them (admin's view)."""
    out = cluster.kubectl(
        "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={release}", "-o", "json"
    )
    items = json.loads(out.stdout)["items"]
    found = [
        (int(s["metadata"]["labels"]["version"]), s["metadata"]["labels"]["status"]) for s in items
    ]
    return sorted(found)


def ready_pods(cluster: Cluster, release: str, namespace: str) -> list[str]:
    """Names of the release's pods that are Running and Ready (simulated by kwok)."""
    out = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
    )
    ready = []
    for pod in json.loads(out.stdout)["items"]:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if pod["status"]["phase"] == "Running" and conditions.get("Ready") == "True":
            ready.append(pod["metadata"]["name"])
    return ready


def leftovers(cluster: Cluster, release: str, namespace: str) -> str:
    """Every object of the release still in the namespace (helm's own records included)."""
    labelled = cluster.kubectl(
        "get",
        "all,ingress,certificate,pdb,networkpolicy,serviceaccount,configmap,secret",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "name",
    ).stdout
    records = cluster.kubectl(
        "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={release}", "-o", "name"
    ).stdout
    return (labelled + records).strip()


def job_lines(run: Run, job: str) -> list[str]:
    """JOB's lines of gitlab-ci-local's output, without its job prefix (padded to align)."""
    prefix = re.compile(rf"{re.escape(job)} *> (.*)")
    return [found[1] for line in run.output.splitlines() if (found := prefix.fullmatch(line))]


def real_registry_variables(registry: Registry, tmp_path: Path) -> dict:
    """What GitLab gives a job for the project's container registry (the real one here)."""
    return {
        "CI_REGISTRY": registry.host,
        "CI_REGISTRY_IMAGE": f"{registry.host}/group/{PROJECT}",
        "CI_REGISTRY_USER": registry.user,
        "CI_REGISTRY_PASSWORD": registry.password,
        "DOCKER_CONFIG": str(tmp_path / "docker"),
    }
