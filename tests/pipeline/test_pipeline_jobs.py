"""The jobs themselves, run by gitlab-ci-local's shell executor: real Helm on the
chart, stand-ins for kaniko, crane, the cluster and the GitLab API that record
exactly what the pipeline sends."""

import base64
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import (
    DEPLOY_TOKEN,
    DEPLOY_USER,
    DIGEST,
    HELM,
    NOWHERE,
    PROJECT,
    SECRETS,
    Run,
    Scratch,
    pull_flags,
)
from tests.support.gitlab_api import GitLabStandIn, chart_yaml
from tests.support.tool_standin import pushed_digest

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


@pytest.mark.parametrize(
    "insecure", [False, True], ids=["tls-verified", "insecure-and-debug-opt-in"]
)
def test_image_build_and_push_stand_in(scratch: Scratch, tmp_path: Path, insecure: bool) -> None:
    """kaniko builds one image per platform with cache and build args; crane pushes each and
    assembles one index, tagged. The opt-ins turn TLS verification off and debug logging on,
    still without secrets."""
    check_image_build_and_push(scratch, tmp_path, insecure)


def test_arm64_off_builds_amd64_only_stand_in(fresh_scratch: Scratch, tmp_path: Path) -> None:
    """build_arm64 false: the amd64 build job alone, and an index of that one image (in a
    scratch repository of its own: no arm64 image left by another test's pipeline)."""
    check_image_build_and_push(
        fresh_scratch, tmp_path, insecure=False, platforms=("linux/amd64",), arm64="false"
    )


def build_job(platform: str) -> str:
    """gitlab-ci-local's name of the build job of PLATFORM (the matrix values, in order)."""
    tag = {"linux/amd64": "docker-builder", "linux/arm64": "docker-builder-arm64"}[platform]
    return f"docker_builder:build:job: [{platform},{tag}]"


def test_build_matrix_has_one_job_per_platform_on_its_runner(scratch: Scratch) -> None:
    """The build is a parallel:matrix whose jobs run on the runner tag of their platform's
    input (docker_builder_tag, docker_builder_tag_arm64); build_arm64 false leaves the arm64
    job out of the pipeline, and the push job needs whichever build jobs there are."""
    scratch.checkout_branch("main")
    for arm64, platforms in (("true", PLATFORMS), ("false", PLATFORMS[:1])):
        jobs = scratch.list_jobs({"PIPELINE_BUILD_ARM64": arm64}, matrix=True)
        builds = sorted(name for name in jobs if name.startswith("docker_builder:build:job"))
        assert builds == [build_job(platform) for platform in platforms], arm64
        assert {"job": "docker_builder:build:job", "artifacts": True, "optional": True} in jobs[
            "docker_builder:push:job"
        ]["needs"]
    preview = yaml.safe_load(scratch.gcl("--preview").stdout)["docker_builder:build:job"]
    assert preview["tags"] == ["$RUNNER_TAG"]
    assert preview["parallel"]["matrix"] == [
        {"PLATFORM": ["linux/amd64"], "RUNNER_TAG": ["docker-builder"]},
        {"PLATFORM": ["linux/arm64"], "RUNNER_TAG": ["docker-builder-arm64"]},
    ]  # (gitlab-ci-local's preview writes each value as a one-item list)


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


@pytest.mark.parametrize("expected", DEPLOYS, ids=["dev-branch-helm4", "main-helm3"])
def test_chart_publish_and_deploy_stand_in(
    scratch: Scratch,
    gitlab: GitLabStandIn,
    tmp_path: Path,
    expected: dict,
    verify_url: str,
) -> None:
    """The chart is linted, packaged, uploaded with the job token, pulled back at exactly
    that version and installed with the pushed digest; review environments stop; a review
    deploy is verified with the prober (against a real server standing in for the host)."""
    check_chart_publish_and_deploy(scratch, gitlab, tmp_path, expected, verify_url)


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


def test_deploy_with_the_chart_part_off_takes_the_newest_chart_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, verify_url: str
) -> None:
    """build_chart=false: no version comes from this pipeline, so the channel's newest
    (pre-releases included, as the pipeline's own versions are) is deployed."""
    fresh_scratch.checkout_branch("dev")
    for version in ("1.0.0-3", "1.0.0-12", "1.0.0-9"):
        subprocess.run(
            [HELM[4], "package", "chart", "--version", version, "--destination", tmp_path],
            cwd=fresh_scratch.path,
            check=True,
            capture_output=True,
        )
        archive = (tmp_path / f"{PROJECT}-{version}.tgz").read_bytes()
        gitlab.state.charts[("dev", f"{PROJECT}-{version}.tgz")] = (archive, chart_yaml(archive))
    variables = {
        **registry_variables(tmp_path),
        "CI_API_V4_URL": gitlab.url,
        "VERIFY_URL": verify_url,
    }
    run = fresh_scratch.gcl(
        "--force-shell-executor",
        "--input",
        "build_chart=false",
        *IMAGE_JOBS,
        "helm:deploy:job",
        variables=variables,
    )
    assert run.returncode == 0, run.output
    assert_no_secrets(run, fresh_scratch)
    [upgrade] = [c for c in run.tool("helm") if c["argv"][0] == "upgrade"]
    assert upgrade["argv"][2:4] == [f"dev-{PROJECT}", f"build/deploy/{PROJECT}-1.0.0-12.tgz"]
    assert "deploying the newest chart in channel dev" in run.output


def test_deploy_fails_clearly_when_the_pushed_chart_is_missing_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path
) -> None:
    """A chart version the registry never lists stops the deploy (after retries), not
    a silent install of something else; nothing reaches the cluster."""
    fresh_scratch.checkout_branch("dev")
    variables = {
        **registry_variables(tmp_path),
        "CI_API_V4_URL": gitlab.url,
        "CHART_NAME": PROJECT,
        "CHART_VERSION": "1.0.0-404",
        "CHART_FETCH_ATTEMPTS": "2",
        "CHART_FETCH_DELAY": "0",
    }
    run = fresh_scratch.gcl("--force-shell-executor", "helm:deploy:job", variables=variables)
    assert run.returncode != 0
    assert f"chart {PROJECT} (--version 1.0.0-404) is not in channel dev" in run.output
    assert run.tool("helm") == []
    index_reads = [r for r in gitlab.state.requests if r.path.endswith("/dev/index.yaml")]
    assert len(index_reads) == 2  # helm repo add, then one helm repo update
    assert_no_secrets(run, fresh_scratch)


def kept_prove_json(scratch: Scratch) -> Path:
    """The prober's JSON among the artifacts gitlab-ci-local kept of helm:deploy:job."""
    # gitlab-ci-local spells each ':' of a job's name as 'Og' in its artifacts folder.
    kept = scratch.path / ".gitlab-ci-local" / "artifacts" / "helmOgdeployOgjob"
    return kept / "build" / "verify" / "prove.json"


def deploy_with_verify(scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, url: str, *args):
    """helm:deploy:job of a review pipeline (after the chart is pushed), verifying URL."""
    scratch.checkout_branch("feature/verify")
    variables = {**registry_variables(tmp_path), "CI_API_V4_URL": gitlab.url, "VERIFY_URL": url}
    return scratch.gcl(
        "--force-shell-executor",
        *args,
        *IMAGE_JOBS,
        *CHART_JOBS,
        "helm:deploy:job",
        variables=variables,
        env={"STANDIN_UPGRADE_SECONDS": "2"},
    )


def test_verify_during_probes_while_the_rollout_runs_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path, verify_url: str
) -> None:
    """verify_during: the prober asks /version from before the upgrade until it returns (the
    stand-in helm takes 2 s), then measures; nothing failed, so the job passes."""
    run = deploy_with_verify(
        fresh_scratch, gitlab, tmp_path, verify_url, "--input", "verify_during=true"
    )
    assert run.returncode == 0, run.output
    [status] = [c["argv"] for c in run.tool("helm") if c["argv"][0] == "status"]
    assert status[1] == f"feature-verify-{PROJECT}", "the check runs only over an existing release"
    results = json.loads(kept_prove_json(fresh_scratch).read_text())
    # Ten a second while the 2 s upgrade ran: the check spanned the rollout, and SIGTERM ended it.
    assert results["during"]["requests"] >= 10, results["during"]
    assert results["during"]["failed"] == []
    assert results["failures"] == []
    assert_no_secrets(run, fresh_scratch)


def test_verify_fails_the_deploy_when_the_host_does_not_answer_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path
) -> None:
    """Nothing answers at the host: the deploy job fails with one line, after the release is
    deployed and its environment recorded, and keeps the prober's JSON."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        run = deploy_with_verify(
            fresh_scratch, gitlab, tmp_path, url, "--input", "verify_during=true"
        )
    assert run.returncode != 0
    assert f"the prober found failures at {url}" in run.output
    assert "the release stays deployed" in run.output
    results = json.loads(kept_prove_json(fresh_scratch).read_text())
    assert results["during"]["failed"], "every request of the rollout check failed"
    assert any("requests failed during the rollout check" in f for f in results["failures"])
    assert (fresh_scratch.path / "build" / "deploy.env").is_file()


def test_verify_never_runs_no_prober_stand_in(
    fresh_scratch: Scratch, gitlab: GitLabStandIn, tmp_path: Path
) -> None:
    """verify=never: a review deploy with nothing at the host still passes."""
    run = deploy_with_verify(fresh_scratch, gitlab, tmp_path, NOWHERE, "--input", "verify=never")
    assert run.returncode == 0, run.output
    assert "prove.py" not in run.output
    assert [c for c in run.tool("helm") if c["argv"][0] == "status"] == []


@pytest.mark.parametrize("debug", [False, True], ids=["default", "pipeline-debug"])
def test_deploy_prints_values_only_with_pipeline_debug_stand_in(
    fresh_scratch: Scratch, tmp_path: Path, debug: bool
) -> None:
    """The deploy values (names only) reach the log only when PIPELINE_DEBUG=true; the
    project's extra values file, which may hold anything, is never printed."""
    fresh_scratch.checkout_branch("dev")
    extra = tmp_path / "extra-values.yaml"
    extra.write_text("podLabels:\n  team: extra-values-marker-3f9a\n")
    variables = {**registry_variables(tmp_path), "VALUES_FILE": str(extra)}
    if debug:
        variables["PIPELINE_DEBUG"] = "true"
    run = fresh_scratch.gcl(
        "--force-shell-executor", "helm_builder:test:deploy:job", variables=variables
    )
    assert run.returncode == 0, run.output
    # helm upgrade --dry-run=server, then the render for the API server's dry run.
    [upgrade, template] = run.tool("helm")
    assert upgrade["argv"][-2:] == ["--values", str(extra)]
    assert template["argv"][-2:] == ["--values", str(extra)]
    assert ("app.gitlab.com/app" in run.output) == debug
    assert "extra-values-marker-3f9a" not in run.output
    assert_no_secrets(run, fresh_scratch)


def render_config(scratch: Scratch, ref: str) -> dict[str, str]:
    """Run helm_builder:test:config:job on REF; its rendered artifacts, by file name."""
    scratch.checkout_branch(ref)
    run = scratch.gcl(
        "--force-shell-executor",
        "helm_builder:test:config:job",
        variables={"CI_REGISTRY_IMAGE": IMAGE},
    )
    assert run.returncode == 0, run.output
    [folder] = {p.parent for p in (scratch.path / ".gitlab-ci-local").rglob("pipeline-*.yaml")}
    return {path.name: path.read_text() for path in folder.iterdir()}


def assert_tier(rendered: dict[str, str], tier: str, branch: str | None) -> None:
    """The TIER manifests and values are the README's table (dev: for BRANCH's slug)."""
    prefix = f"{branch}." if branch else ""
    release = f"{branch}-{PROJECT}" if branch else PROJECT
    [ingress] = [
        doc
        for doc in yaml.safe_load_all(rendered[f"pipeline-{tier}.yaml"])
        if doc and doc["kind"] == "Ingress"
    ]
    assert ingress["metadata"]["namespace"] == tier
    assert ingress["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    assert (
        ingress["spec"]["ingressClassName"]
        == {
            "prod": "external-nginx",
            "dev": "internal-nginx",
        }[tier]
    )
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [f"{prefix}{PROJECT}.fzen.pro"]
    values = yaml.safe_load(rendered[f"pipeline-{tier}-values.yaml"])
    assert (values["channel"], values["image"]["tag"]) == (
        (branch, branch) if branch else ("release", "latest")
    )


def test_chart_config_renders_the_pipelines_own_tier(fresh_scratch: Scratch) -> None:
    """A dev and a prod pipeline each lint and render the chart with their own tier's deploy
    values, the names of the README's table (the other tier is its own pipelines' check)."""
    feature = render_config(fresh_scratch, "feature/Login_Form")
    assert_tier(feature, "dev", "feature-login-form")
    assert "pipeline-prod.yaml" not in feature
    main = render_config(fresh_scratch, "main")
    assert_tier(main, "prod", None)
    # The chart's own test values are rendered too.
    assert "full-values.yaml" in feature


@pytest.mark.parametrize(
    ("ref", "release"),
    [("dev", f"dev-{PROJECT}"), ("feature/Login_Form", f"feature-login-form-{PROJECT}")],
)
def test_stop_needs_no_artifact_and_no_checkout_stand_in(
    fresh_scratch: Scratch, ref: str, release: str
) -> None:
    """helm:stop:job alone, in a project where no deploy job ever left an artifact (they
    expire before a review environment may be stopped): it uninstalls the release from the
    pipeline's own variables, exactly the names the deploy job used."""
    fresh_scratch.checkout_branch(ref)
    run = fresh_scratch.gcl("--force-shell-executor", "helm:stop:job", "--manual", "helm:stop:job")
    assert run.returncode == 0, run.output
    assert not list((fresh_scratch.path / ".gitlab-ci-local").rglob("deploy.env"))
    assert [c["argv"] for c in run.tool("helm")] == [
        [
            "uninstall",
            release,
            "--namespace",
            "dev",
            "--kube-context",
            "dev/kubernetes-agent-config:kubernetes-agent-dev",
            "--wait",
            "--ignore-not-found",
        ]
    ]
