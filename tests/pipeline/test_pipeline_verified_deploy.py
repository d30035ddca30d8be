"""Only a signed digest deploys: docker_builder:verify:job and helm:deploy:job under
gitlab-ci-local with the real cosign, crane and Helm 4, against the real TLS + htpasswd
registry and the real API server of the local control plane, reached through the kubeconfig
GitLab writes for the agent. kaniko cannot run here: its stand-in writes real image
tarballs, which the real crane pushes as an image index. Every refusal is checked on the
API server: the release's namespace holds nothing of it, not even Helm's release record.

Each test is a project of its own in the registry (cosign keeps a signature beside the image
it signs, and the kaniko stand-in builds the same image every time) and a branch of its own,
so its release is its own."""

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hack import cluster_tools
from hack.cluster import Cluster
from hack.pki import Pki
from tests.pipeline.conftest import HELM, NOWHERE, PROJECT, SECRETS, Run, build_scratch
from tests.pipeline.pipelinelib import (
    IMAGE_JOBS,
    RealPipeline,
    assert_no_secrets,
    gitlab,  # noqa: F401 - fixture, over this module's gitlab_ca
    history,
    job_lines,
    leftovers,
    ready_pods,
    real_registry_variables,
)
from tests.registry.registrylib import Keys, Registry, crane, key_pair, login, running_registry
from tests.support.gitlab_api import GitLabStandIn

SIGN, VERIFY, DEPLOY = "docker_builder:sign:job", "docker_builder:verify:job", "helm:deploy:job"
CHART_JOBS = ("helm_builder:build:job", "helm_builder:push:job")
# Signing with a key kept in the registry only (Sigstore's public log is out of reach here);
# the deploy's probe of the public host is left out: the pods are simulated. The SBOM's
# attestation on the real registry is tests/registry/test_sbom_real.py's; here it is off.
INPUTS = ("signing=key", "signing_tlog=false", "sbom=false", "verify=never")


@pytest.fixture(scope="module")
def gitlab_ca(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The private CA of GitLab and its registry: it signs the certificates of the GitLab API
    stand-in (the gitlab fixture, the Helm registry the chart goes through) and of the real
    registry."""
    return Pki(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="module")
def registry(gitlab_ca: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The real registry (docker-registry, htpasswd), served with a certificate of that CA."""
    with running_registry(tmp_path_factory.mktemp("registry"), gitlab_ca) as started:
        yield started


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    """The pinned crane and cosign (built or reused once)."""
    return cluster_tools.ensure(["crane", "cosign"])


@pytest.fixture(scope="module")
def keys(tools: dict, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """The project's key pair: COSIGN_PRIVATE_KEY and COSIGN_PUBLIC_KEY."""
    folder = tmp_path_factory.mktemp("keys") / "project"
    return key_pair(tools["cosign"], folder, SECRETS["COSIGN_PASSWORD"])


@pytest.fixture(scope="module")
def other_keys(tools: dict, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Someone else's key pair (with the same password, so only the key differs)."""
    folder = tmp_path_factory.mktemp("keys") / "other"
    return key_pair(tools["cosign"], folder, SECRETS["COSIGN_PASSWORD"])


@dataclass
class Project:
    """A project on its own branch: its pipelines with the real cosign, crane, Helm 4 and
    kubectl, its image in the real registry, its release in dev on the real API server."""

    real: RealPipeline
    registry: Registry
    keys: Keys
    branch: str

    @property
    def image(self) -> str:
        """CI_REGISTRY_IMAGE: the project's repository in the real registry."""
        return f"{self.registry.host}/dev/{self.branch}"

    @property
    def release(self) -> str:
        """The dev release of the branch (a valid DNS label: the seed's name)."""
        return f"{self.branch}-{PROJECT}"

    def pipeline(
        self, *jobs: str, inputs: tuple = (), retry: bool = False, **variables: str
    ) -> Run:
        """A new pipeline of JOBS, signing with the key: no artifacts of an earlier pipeline,
        unless RETRY (JOBS run again in the last pipeline, on its jobs' reports)."""
        if not retry:
            shutil.rmtree(self.real.scratch.path / ".gitlab-ci-local" / "artifacts", True)
        flags = [word for given in (*INPUTS, *inputs) for word in ("--input", given)]
        run = self.real.run(
            *flags,
            *jobs,
            **{
                **real_registry_variables(self.registry, self.real.tmp_path),
                "CI_REGISTRY_IMAGE": self.image,
                "COSIGN_PRIVATE_KEY": str(self.keys.private),
                "COSIGN_PUBLIC_KEY": str(self.keys.public),
                "COSIGN_PASSWORD": SECRETS["COSIGN_PASSWORD"],
                **variables,
            },
        )
        assert_no_secrets(
            run, self.real.scratch, {"the registry's password": self.registry.password}
        )
        return run

    def handed_on(self, report: str) -> dict:
        """The variables a job of the last pipeline handed on in its dotenv REPORT."""
        [path] = (self.real.scratch.path / ".gitlab-ci-local" / "artifacts").rglob(report)
        return dict(line.split("=", 1) for line in path.read_text().splitlines())

    def namespace(self) -> set[tuple[str, str, str]]:
        """Every object in dev, as (kind, name, resourceVersion): any write changes the set."""
        return namespace_objects(self.real.cluster, "dev")

    def assert_refused(self, run: Run, digest: str, before: set) -> None:
        """The verify job of RUN refused DIGEST in its one line, naming the key it expected;
        the deploy never started, and the API server is untouched since BEFORE."""
        assert run.returncode != 0
        [line] = error_lines(run, VERIFY)
        assert line.startswith(
            f"ERROR: image {self.image}@{digest} has no valid signature by the key"
            f" {self.keys.public}: "
        )
        assert job_lines(run, DEPLOY) == [], "the deploy started"
        self.assert_untouched(before)

    def assert_untouched(self, before: set) -> None:
        """Nothing in dev was created or changed since BEFORE, and nothing of the release is
        there, not even Helm's release record."""
        assert self.namespace() - before == set()
        assert leftovers(self.real.cluster, self.release, "dev") == ""


@pytest.fixture
def project(
    repo_root: Path,
    tmp_path: Path,
    cluster: Cluster,
    gitlab: GitLabStandIn,  # noqa: F811 - the fixture imported above
    gitlab_ca: Pki,
    *,
    registry: Registry,
    tools: dict,
    keys: Keys,
    request: pytest.FixtureRequest,
) -> Iterator[Project]:
    """The pipeline's project on the branch the test names, the real tools in place of the
    stand-ins (kaniko's excepted); whatever it deployed is removed afterwards."""
    branch = request.param
    base = tmp_path / "project"
    base.mkdir()
    scratch = build_scratch(repo_root, base)
    for tool, path in (
        ("cosign", tools["cosign"]),
        ("crane", tools["crane"]),
        ("helm", HELM[4]),
        ("kubectl", cluster_tools.BIN / "kubectl"),
    ):
        (scratch.bin / tool).unlink()
        (scratch.bin / tool).symlink_to(path)
    scratch.checkout_branch(branch)
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(gitlab_ca.cert_pem() + cluster.ca.read_bytes())
    real = RealPipeline(scratch, cluster, gitlab, tmp_path, 4, NOWHERE, bundle)
    yield Project(real, registry, keys, branch)
    # Gone before the next test looks at the namespace: the pods with their Deployment.
    for selector in (
        f"app.kubernetes.io/instance={branch}-{PROJECT}",
        f"owner=helm,name={branch}-{PROJECT}",
    ):
        cluster.kubectl(
            "delete",
            "secrets,deploy,svc,ingress,certificate,pdb,sa,networkpolicy",
            "-n",
            "dev",
            "-l",
            selector,
            "--cascade=foreground",
        )


def namespace_objects(cluster: Cluster, namespace: str) -> set[tuple[str, str, str]]:
    """Every object of every kind the API server lists in NAMESPACE (admin's view), but
    Events, which the controllers write about objects of earlier tests."""
    kinds = [
        kind
        for kind in cluster.kubectl(
            "api-resources", "--namespaced", "--verbs=list", "-o", "name"
        ).stdout.split()
        if kind.split(".")[0] != "events"
    ]
    listed = json.loads(
        cluster.kubectl("get", ",".join(kinds), "-n", namespace, "-o", "json").stdout
    )
    return {
        (item["kind"], item["metadata"]["name"], item["metadata"]["resourceVersion"])
        for item in listed["items"]
    }


def error_lines(run: Run, job: str) -> list[str]:
    """JOB's ERROR lines, each once (gitlab-ci-local's summary of a failed job repeats its
    last lines)."""
    return list(dict.fromkeys(line for line in job_lines(run, job) if line.startswith("ERROR: ")))


@pytest.mark.parametrize("project", ["unsigned"], indirect=True)
def test_an_unsigned_index_is_refused_and_the_cluster_untouched_real(
    project: Project,
) -> None:
    """No sign job: the index crane pushed carries no signature, the verify job fails with its
    one line naming that digest and the key it expected, and the deploy never starts. Run by
    itself on that push's report, the deploy refuses the unverified digest before any Helm
    command. Nothing reaches the API server either way."""
    before = project.namespace()
    run = project.pipeline(*IMAGE_JOBS, *CHART_JOBS, VERIFY, DEPLOY)
    digest = project.handed_on("image.env")["IMAGE_DIGEST"]
    project.assert_refused(run, digest, before)

    alone = project.pipeline(DEPLOY, retry=True)
    assert error_lines(alone, DEPLOY) == [
        f"ERROR: image {project.image}@{digest} is not the digest docker_builder:verify:job"
        " verified (none): with the signing input key, only a verified image deploys"
    ]
    project.assert_untouched(before)


@pytest.mark.parametrize("project", ["other-key"], indirect=True)
def test_an_index_signed_by_another_key_is_refused_and_the_cluster_untouched_real(
    project: Project, other_keys: Keys
) -> None:
    """The sign job signs with someone else's key: the signature is in the registry, but the
    verify job, given the project's public key, fails with its one line, and the deploy never
    starts."""
    before = project.namespace()
    run = project.pipeline(
        *IMAGE_JOBS,
        SIGN,
        *CHART_JOBS,
        VERIFY,
        DEPLOY,
        COSIGN_PRIVATE_KEY=str(other_keys.private),
    )
    assert error_lines(run, SIGN) == []
    project.assert_refused(run, project.handed_on("image.env")["IMAGE_DIGEST"], before)


def tampered(tools: dict, project: Project, tag: str) -> str:
    """Move TAG of the project's image to an image of someone else's (one layer, its own
    file), as anyone allowed to push there can; that image's digest."""
    layer = project.real.tmp_path / "tampered.tar"
    with tarfile.open(layer, "w") as archive:
        content = b"not what the pipeline built\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    env = {
        "PIPELINE_CA_FILE": str(project.registry.ca),
        "DOCKER_CONFIG": str(project.real.tmp_path / "docker"),
        "HOME": str(project.real.tmp_path),
    }
    login(tools, env, project.registry)
    pushed = crane(tools, env, "append", "-f", str(layer), "-t", f"{project.image}:{tag}")
    return pushed.strip().rsplit("@", 1)[1]


@pytest.mark.parametrize("project", ["tampered"], indirect=True)
def test_a_tag_moved_after_signing_is_refused_and_the_cluster_untouched_real(
    project: Project, tools: dict
) -> None:
    """A first pipeline pushes and signs the index and tags it with the branch (IMAGE_TAG).
    A pipeline with the image part off deploys what that tag names: its verify job checks
    the digest the tag names now, which passes; once the tag is moved to another image, it
    refuses that image's digest with its one line, and the deploy never starts."""
    signed = project.pipeline(*IMAGE_JOBS, SIGN)
    assert signed.returncode == 0, signed.output
    index = project.handed_on("image.env")["IMAGE_DIGEST"]
    intact = project.pipeline(VERIFY, inputs=("build_image=false",))
    assert intact.returncode == 0, intact.output
    assert project.handed_on("verified.env")["VERIFIED_IMAGE_DIGEST"] == index
    moved = tampered(tools, project, project.branch)
    assert moved != index
    before = project.namespace()
    run = project.pipeline(*CHART_JOBS, VERIFY, DEPLOY, inputs=("build_image=false",))
    project.assert_refused(run, moved, before)


@pytest.mark.parametrize("project", ["signed"], indirect=True)
def test_the_signed_index_is_verified_and_deployed_simulated(project: Project) -> None:
    """The whole path with the project's key: push, sign, verify, deploy. The deploy reaches
    the API server through the agent's context, installs exactly the verified digest, its
    pods get Ready (kwok) and the chart's test passes."""
    run = project.pipeline(*IMAGE_JOBS, SIGN, *CHART_JOBS, VERIFY, DEPLOY)
    assert run.returncode == 0, run.output
    digest = project.handed_on("image.env")["IMAGE_DIGEST"]
    assert project.handed_on("verified.env")["VERIFIED_IMAGE_DIGEST"] == digest
    cluster = project.real.cluster
    assert history(cluster, project.release, "dev") == [(1, "deployed")]
    assert len(ready_pods(cluster, project.release, "dev")) == 2
    deployment = json.loads(
        cluster.kubectl("get", "deploy", project.release, "-n", "dev", "-o", "json").stdout
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{project.image}@{digest}"
    assert "Phase:          Succeeded" in run.output
