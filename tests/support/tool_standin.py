#!/usr/bin/env python3
"""Stand-in for executor, crane, kubectl, the cluster side of helm, cosign's Sigstore side
and syft: records each call."""

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# helm subcommands that talk to a cluster; everything else runs the real helm.
CLUSTER_COMMANDS = {"upgrade", "install", "uninstall", "rollback", "status", "list", "get", "test"}
# What the kubectl stand-in answers for a Pod when STANDIN_REJECT_PODS is set: the API
# server's words for a Pod Security rejection (a message of its own, not kubectl's).
POD_SECURITY_REJECTION = (
    'Error from server (Forbidden): pods "{name}" is forbidden:'
    ' violates PodSecurity "restricted:latest": {reason}'
)


def record(tool: str, argv: list[str], **extra: object) -> None:
    """Append one call (argv, environment, working directory) to the record file."""
    entry = {
        "tool": tool,
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        # The program that called the stand-in: which shell ran the job's script.
        "caller": os.readlink(f"/proc/{os.getppid()}/exe"),
        # ...and its arguments: the script that shell was running.
        "caller_argv": Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")[:-1],
        **extra,
    }
    with Path(os.environ["STANDIN_RECORD"]).open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


# kaniko v1.24.0 (the pipeline's kaniko image), whose rules the executor stand-in keeps:
# - cmd/executor/cmd/root.go: with --cache-repo, push permission is checked before the build,
#   --no-push or not ("error checking push permissions -- ...");
# - pkg/executor/push.go, CheckPushPermissions: with --no-push (and no --no-push-cache) the
#   cache repository is what is checked, through util.MakeTransport and go-containerregistry's
#   remote.CheckPushPermission (authenticate, then start a blob upload);
# - pkg/util/transport_util.go, MakeTransport: --skip-tls-verify turns verification off; else
#   --registry-certificate's file for exactly that registry name (host[:port]) is added to the
#   system's CAs; any other registry gets the system's CAs alone;
# - pkg/config/args.go, keyValueArg.Set: --registry-certificate is `registry=path`.
KANIKO_PUSH_CHECK = (
    "error checking push permissions -- make sure you entered the correct tag name, and that"
    ' you are authenticated correctly, and try again: checking push permission for "{ref}": {why}'
)
# Registry names under .test never resolve (RFC 2606): the tests that only record commands
# use one, and the stand-in then checks the flags but does not go to the network.
OFFLINE_SUFFIX = ".test"


def flag_values(argv: list[str], flag: str) -> list[str]:
    """Every value of a repeatable flag given as `--flag value` or `--flag=value`."""
    found = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
    return found + [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{flag}=")]


def registry_of(reference: str) -> str:
    """The registry name of an image reference, as go-containerregistry reads it."""
    first = reference.split("/", 1)[0]
    if "/" in reference and ("." in first or ":" in first or first == "localhost"):
        return first
    return "index.docker.io"


def kaniko_transport(argv: list[str], registry: str) -> ssl.SSLContext | str:
    """The TLS context kaniko's MakeTransport builds for REGISTRY, or its error."""
    certificates = {}
    for value in flag_values(argv, "--registry-certificate"):
        if "=" not in value:
            return f"invalid argument value. expect key=value, got {value}"
        key, path = value.split("=", 1)
        certificates[key] = path
    if "--skip-tls-verify" in argv:
        return ssl._create_unverified_context()  # noqa: S323 - kaniko's opt-out, as it does
    context = ssl.create_default_context()
    if registry in certificates:
        if not Path(certificates[registry]).is_file():
            return (
                f"making transport for registry {registry!r}: failed to load certificate"
                f" {certificates[registry]} for {registry}: no such file or directory"
            )
        context.load_verify_locations(certificates[registry])
    return context


def kaniko_push_check(argv: list[str], docker_config: dict) -> str | None:
    """What kaniko's push-permission check of the cache repository says, or None when it
    passes: a real TLS connection and the start of an upload, against a reachable registry."""
    cache_repo = (flag_values(argv, "--cache-repo") or [""])[0]
    if not cache_repo:
        return None
    registry = registry_of(cache_repo)
    context = kaniko_transport(argv, registry)
    if isinstance(context, str):
        return context
    if registry.split(":")[0].endswith(OFFLINE_SUFFIX):
        return None
    auth = docker_config.get("auths", {}).get(registry, {}).get("auth", "")
    headers = {"Authorization": f"Basic {auth}"} if auth else {}
    uploads = f"https://{registry}/v2/{cache_repo.split('/', 1)[1]}/blobs/uploads/"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(uploads, method="POST", headers=headers),
            context=context,
            timeout=10,
        ) as answer:
            location = answer.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return f"POST {uploads}: {error.code} {error.reason}"
    except urllib.error.URLError as error:
        why = error.reason
        if isinstance(why, ssl.SSLCertVerificationError):
            why = "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        return f'Get "https://{registry}/v2/": {why}'
    if location:  # cancelled, as remote.CheckPushPermission does; its answer does not count
        cancel = urllib.request.Request(  # noqa: S310
            urllib.parse.urljoin(uploads, location), method="DELETE", headers=headers
        )
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(cancel, context=context, timeout=10).close()  # noqa: S310
    return None


def image_tarball(destination: str) -> bytes:
    """A real, small image tarball (docker save format, one layer) tagged DESTINATION, so a
    real crane can push what this kaniko stand-in built."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer_tar:
        content = b"built by the kaniko stand-in\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        layer_tar.addfile(info, io.BytesIO(content))
    layer = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [destination], "Layers": ["layer.tar"]}]
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as image:
        members = (("manifest.json", manifest), (config_name, config), ("layer.tar", layer))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            image.addfile(info, io.BytesIO(data))
    return out.getvalue()


def executor(argv: list[str]) -> int:
    """kaniko: record the build; check push access to --cache-repo as kaniko does (see
    KANIKO_PUSH_CHECK); write a real, small image tarball where asked."""
    config = Path(os.environ.get("DOCKER_CONFIG", "/kaniko/.docker")) / "config.json"
    text = config.read_text(encoding="utf-8")
    record("executor", argv, docker_config=text)
    refused = kaniko_push_check(argv, json.loads(text))
    if refused:
        ref = f"{(flag_values(argv, '--cache-repo') or [''])[0]}:latest"
        print(KANIKO_PUSH_CHECK.format(ref=ref, why=refused), file=sys.stderr)
        return 1
    tar_path = argv[argv.index("--tar-path") + 1]
    destination = (flag_values(argv, "--destination") or ["image:latest"])[0]
    Path(tar_path).write_bytes(image_tarball(destination))
    return 0


def positional(argv: list[str], valued: set[str]) -> list[str]:
    """The words of ARGV that are neither flags nor the values of the VALUED flags."""
    words = []
    for i, arg in enumerate(argv):
        if not arg.startswith("-") and (i == 0 or argv[i - 1] not in valued):
            words.append(arg)
    return words


def pushed_digest(reference: str) -> str:
    """The digest the crane stand-in reports for a pushed image: one per tag, stable."""
    return "sha256:" + hashlib.sha256(reference.encode()).hexdigest()


# The platforms of the index that `crane manifest` shows (the pipeline builds these two).
INDEX_PLATFORMS = ("amd64", "arm64")


def index_manifest(reference: str) -> str:
    """An image index as the registry serves it (compact JSON, as crane index append writes
    it): one Docker image manifest per INDEX_PLATFORMS entry."""
    manifests = [
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 428,
            "digest": pushed_digest(f"{reference}-{arch}"),
            "platform": {"architecture": arch, "os": "linux"},
        }
        for arch in INDEX_PLATFORMS
    ]
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": manifests,
        },
        separators=(",", ":"),
    )


def syft_image_tar() -> bytes:
    """The file system of anchore/syft's release image as `crane export` writes it: /syft
    (here this stand-in, by a link, answering as syft) and its CA bundle."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        program = tarfile.TarInfo("syft")
        program.type, program.linkname = tarfile.SYMTYPE, str(Path(__file__).resolve())
        tar.addfile(program)
        info = tarfile.TarInfo("etc/ssl/certs/ca-certificates.crt")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


def crane(argv: list[str]) -> int:
    """crane: record; `auth login` reads the password from stdin; `push` prints ref@digest
    (pushed_digest of the tag); `index append` prints the index's ref@STANDIN_DIGEST;
    `manifest` prints an index (index_manifest); `export` writes syft's image (syft_image_tar)."""
    stdin = sys.stdin.read() if "--password-stdin" in argv else None
    record("crane", argv, stdin=stdin)
    if argv and argv[0] == "push":
        reference = argv[-1].rsplit(":", 1)[0]
        print(f"{reference}@{pushed_digest(argv[-1])}")
    if argv[:2] == ["index", "append"]:
        reference = argv[argv.index("--tag") + 1].rsplit(":", 1)[0]
        print(f"{reference}@{os.environ['STANDIN_DIGEST']}")
    if argv and argv[0] == "manifest":
        print(index_manifest(argv[-1]))
    if argv and argv[0] == "export":
        for platform in flag_values(argv, "--platform"):
            if not re.fullmatch(r"[a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?", platform):
                print(f"Error: parsing platform {platform!r}", file=sys.stderr)
                return 1
        _image, tarball = positional(argv[1:], {"--platform"})
        Path(tarball).write_bytes(syft_image_tar())
    return 0


# syft v1.54.1's rules (its list of output formats and their versions, from the error it
# gives for an unknown one, cmd/syft/internal/options/writer.go; the source schemes of
# syft/source/sourceproviders; the platform is os/arch[/variant]).
SYFT_FORMATS = {
    "cyclonedx-json": {"1.2", "1.3", "1.4", "1.5", "1.6", "1.7"},
    "cyclonedx-xml": {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"},
    "github-json": set(),
    "purls": set(),
    "spdx-json": {"2.2", "2.3", "3.0"},
    "spdx-tag-value": {"2.1", "2.2", "2.3"},
    "syft-json": set(),
    "syft-table": set(),
    "syft-text": set(),
}
SYFT_SCHEMES = {"docker", "podman", "containerd", "docker-archive", "oci-archive", "oci-dir"}
SYFT_SCHEMES |= {"singularity", "oci-registry", "registry", "dir", "file"}


def syft(argv: list[str]) -> int:
    """syft: `version` answers; `scan SOURCE --output FORMAT=FILE` refuses a format or source
    scheme syft does not know, and writes a minimal CycloneDX JSON document to FILE."""
    record("syft", argv)
    if argv[:1] == ["version"]:
        print("Application:   syft\nVersion:       1.54.1 (stand-in)")
        return 0
    if argv[:1] != ["scan"]:
        print(f"stand-in syft: only version and scan, not {argv[:1]}", file=sys.stderr)
        return 1
    [source] = positional(argv[1:], {"--output", "-o", "--platform"})
    if source.split(":", 1)[0] not in SYFT_SCHEMES:
        print(f"could not determine source: {source!r}", file=sys.stderr)
        return 1
    for output in flag_values(argv, "--output") + flag_values(argv, "-o"):
        name, _, path = output.partition("=")
        name, _, version = name.partition("@")
        if name not in SYFT_FORMATS or (version and version not in SYFT_FORMATS[name]):
            print(
                f'unsupported output format "{name}", supported formats are: ...', file=sys.stderr
            )
            return 1
        document = {
            "bomFormat": "CycloneDX",
            "specVersion": version or "1.7",
            "metadata": {"component": {"type": "container", "name": source.split(":", 1)[1]}},
            "components": [],
        }
        # Compact, as syft writes it.
        Path(path).write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    return 0


# Fulcio's GitLab issuers and the audience it requires (sigstore/fulcio,
# config/identity/config.yaml: type ci-provider, ci-provider gitlab-pipeline, client-id
# sigstore); the certificate's identity is "https://" + the token's ci_config_ref_uri claim.
FULCIO_GITLAB_ISSUERS = {"https://gitlab.com", "https://ops.gitlab.net", "https://dev.gitlab.org"}


def jwt_claims(token: str) -> dict:
    """The claims of a JWT (not verified: the stand-in has no GitLab signing key)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def fulcio_refusal() -> str | None:
    """What Fulcio says to the job's SIGSTORE_ID_TOKEN, or None when it issues a certificate."""
    token = os.environ.get("SIGSTORE_ID_TOKEN", "")
    if not token:
        return "signing: no identity token (keyless)"
    claims = jwt_claims(token)
    if claims.get("iss") not in FULCIO_GITLAB_ISSUERS:
        return f"fulcio: unsupported issuer {claims.get('iss')!r}"
    if claims.get("aud") != "sigstore":
        return f'oidc: expected audience "sigstore" got {claims.get("aud")!r}'
    if not claims.get("ci_config_ref_uri"):
        return "fulcio: token has no ci_config_ref_uri claim"
    return None


# The digests the verify commands refuse (a space-separated list in each variable), and
# cosign's words for them.
COSIGN_REFUSED = {
    "verify": ("STANDIN_UNSIGNED", "no matching signatures:"),
    "verify-attestation": ("STANDIN_UNATTESTED", "no matching attestations:"),
}


def cosign_refusal(argv: list[str]) -> str | None:
    """Why cosign refuses ARGV, or None."""
    command = argv[0] if argv else ""
    if command in {"sign", "attest"} and "--key" not in argv:
        refused = fulcio_refusal()
        if refused:
            return refused
    if command == "attest":
        predicate = Path((flag_values(argv, "--predicate") or [""])[0])
        try:
            json.loads(predicate.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return f"reading predicate: {error}"
    if command in COSIGN_REFUSED:
        variable, words = COSIGN_REFUSED[command]
        if argv[-1].rsplit("@", 1)[-1] in os.environ.get(variable, "").split():
            return words
    return None


def recorded_attestations(reference: str) -> list[dict]:
    """The predicates `attest` put on REFERENCE in this run (the record file is the
    stand-in's registry), after those an earlier pipeline left on every digest: an SBOM
    naming each platform in STANDIN_ATTESTED (space-separated, as sbom.sh names them)."""
    earlier = [
        {"metadata": {"component": {"properties": [{"name": "oci:platform", "value": p}]}}}
        for p in os.environ.get("STANDIN_ATTESTED", "").split()
    ]
    text = Path(os.environ["STANDIN_RECORD"]).read_text(encoding="utf-8")
    calls = [json.loads(line) for line in text.splitlines()]
    return earlier + [
        call["predicate"]
        for call in calls
        if call["tool"] == "cosign" and call["argv"][:1] == ["attest"]
        if call["argv"][-1] == reference
    ]


def attestation_envelope(reference: str, predicate: dict) -> str:
    """A DSSE envelope as `cosign verify-attestation` prints it for a CycloneDX attestation on
    REFERENCE, compact: the in-toto statement base64-encoded, cosign's ", " after each comma
    in it."""
    name, digest = reference.rsplit("@", 1)
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": "https://cyclonedx.org/bom",
        "predicate": predicate,
    }
    payload = json.dumps(statement, separators=(", ", ":")).encode()
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": "c3RhbmQtaW4="}],
        },
        separators=(",", ":"),
    )


def cosign_save(argv: list[str]) -> None:
    """`cosign save --dir DIR REFERENCE` of an index (index_manifest): an OCI layout where the
    index is the blob its digest names."""
    [reference] = positional(argv[1:], {"--dir"})
    folder = Path(flag_values(argv, "--dir")[0])
    repository, digest = reference.rsplit("@", 1)
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / digest.removeprefix("sha256:")).write_text(index_manifest(repository))
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def cosign(argv: list[str]) -> int:
    """cosign, Sigstore stand-in: records each call; `login` reads the password from stdin.
    Keyless `sign` and `attest` (no --key) exchange SIGSTORE_ID_TOKEN as Fulcio does, refusing
    a token Fulcio refuses (issuer not configured, audience not sigstore, no
    ci_config_ref_uri); `attest` needs a JSON predicate file, which it records; `verify` and
    `verify-attestation` refuse the digests listed in STANDIN_UNSIGNED and STANDIN_UNATTESTED;
    `verify-attestation` prints the attestations recorded on the reference, and with none
    refuses it as cosign does; `save` writes the index (cosign_save)."""
    stdin = sys.stdin.read() if "--password-stdin" in argv else None
    refused = cosign_refusal(argv)
    predicate = None
    if argv[:1] == ["attest"] and not refused:
        predicate_file = Path(flag_values(argv, "--predicate")[0])
        predicate = json.loads(predicate_file.read_text(encoding="utf-8"))
    record("cosign", argv, stdin=stdin, predicate=predicate)
    if refused:
        print(f"Error: {refused}", file=sys.stderr)
        return 1
    if argv[:1] == ["verify-attestation"]:
        attestations = recorded_attestations(argv[-1])
        if not attestations:
            print(f"Error: {COSIGN_REFUSED['verify-attestation'][1]}", file=sys.stderr)
            return 1
        for attestation in attestations:
            print(attestation_envelope(argv[-1], attestation))
    if argv[:1] == ["save"]:
        cosign_save(argv)
    return 0


def unknown_flags(real: str, argv: list[str]) -> list[str]:
    """Flags in ARGV that the real helm's subcommand does not document (e.g. Helm 3 and
    --rollback-on-failure), so the stand-in refuses what the real helm would refuse."""
    usage = subprocess.run(
        [real, argv[0], "--help"], check=True, capture_output=True, text=True
    ).stdout
    known = set(re.findall(r"--[a-z][a-z0-9-]*", usage))
    flags = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    return sorted(flags - known)


def set_files(argv: list[str]) -> dict[str, str]:
    """The values that --set-file flags in ARGV hand over, read from their files now (the
    job removes them when it ends)."""
    pairs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--set-file"]
    found = {}
    for pair in pairs:
        for item in pair.split(","):
            key, path = item.split("=", 1)
            found[key] = {"path": path, "text": Path(path).read_text(encoding="utf-8")}
    return found


def helm(argv: list[str]) -> int:
    """helm: record cluster commands (checking their flags); run every other one for real.
    `template --dry-run=server` (lookups and capabilities from the cluster) is recorded and
    rendered for real without the cluster."""
    real = os.environ["REAL_HELM"]
    if argv and argv[0] in CLUSTER_COMMANDS:
        record("helm", argv, set_files=set_files(argv))
        unknown = unknown_flags(real, argv)
        if unknown:
            print(f"Error: unknown flag(s) {unknown} for helm {argv[0]}", file=sys.stderr)
            return 1
        if argv[0] == "upgrade" and any(arg.startswith("--dry-run") for arg in argv):
            # The real one prints the rendered manifests (the pull Secret among them).
            return subprocess.run([real, *dry_run_render(argv)], check=False).returncode
        if argv[0] == "upgrade":
            # A rollout takes a while: long enough for what runs beside it to be seen.
            time.sleep(float(os.environ.get("STANDIN_UPGRADE_SECONDS", "0")))
        return 0
    if argv and argv[0] == "template" and "--dry-run=server" in argv:
        record("helm", argv, set_files=set_files(argv))
        unknown = unknown_flags(real, argv)
        if unknown:
            print(f"Error: unknown flag(s) {unknown} for helm template", file=sys.stderr)
            return 1
        argv = [arg for arg in argv if arg != "--dry-run=server"]
        context = argv.index("--kube-context")
        del argv[context : context + 2]
    os.execv(real, [real, *argv])  # noqa: S606 - the real helm, replacing this process
    return 1


def dry_run_render(argv: list[str]) -> list[str]:
    """`helm template` arguments for what `helm upgrade --install --dry-run=...` renders."""
    words = [arg for arg in argv[1:] if arg != "--install" and not arg.startswith("--dry-run")]
    if "--kube-context" in words:
        at = words.index("--kube-context")
        del words[at : at + 2]
    return ["template", *words]


def documents(text: str) -> list[tuple[str, str]]:
    """(kind, name) of each object in a multi-document YAML text, read from the top-level
    `kind:` and the `metadata:` block's `name:` lines (helm template's layout)."""
    found = []
    for doc in re.split(r"^---\s*$", text, flags=re.MULTILINE):
        kind = re.search(r"^kind: *(\S+)", doc, flags=re.MULTILINE)
        name = re.search(r"^metadata:\n(?:  .*\n)*?  name: *(\S+)", doc, flags=re.MULTILINE)
        if kind and name:
            found.append((kind[1], name[1].strip("\"'")))
    return found


def kubectl(argv: list[str]) -> int:
    """kubectl: only a server-side dry run of a server-side apply is answered. Records the
    manifests it got and answers per object, as kubectl does: with STANDIN_REJECT_PODS=<reason>
    every Pod is refused as Pod Security's enforce mode refuses it, the rest accepted."""
    source = argv[argv.index("--filename") + 1] if "--filename" in argv else "-"
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    record("kubectl", argv, manifests=text)
    if argv[:1] != ["apply"] or not {"--server-side", "--dry-run=server"} <= set(argv):
        print("stand-in kubectl: only apply --server-side --dry-run=server", file=sys.stderr)
        return 1
    reason = os.environ.get("STANDIN_REJECT_PODS")
    errors = []
    for kind, name in documents(text):
        if kind == "Pod" and reason:
            errors.append(POD_SECURITY_REJECTION.format(name=name, reason=reason))
        else:
            print(f"{kind.lower()}/{name} serverside-applied (server dry run)")
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    tool = Path(sys.argv[0]).name
    tools = {
        "executor": executor,
        "crane": crane,
        "helm": helm,
        "kubectl": kubectl,
        "cosign": cosign,
        "syft": syft,
    }
    sys.exit(tools[tool](sys.argv[1:]))
