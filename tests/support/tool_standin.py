#!/usr/bin/env python3
"""Stand-in for executor, crane, kubectl, the cluster side of helm and cosign's Sigstore side:
records each call."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
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


def executor(argv: list[str]) -> int:
    """kaniko: record the build and write a small image.tar where asked."""
    config = Path(os.environ.get("DOCKER_CONFIG", "/kaniko/.docker")) / "config.json"
    record("executor", argv, docker_config=config.read_text(encoding="utf-8"))
    tar_path = argv[argv.index("--tar-path") + 1]
    Path(tar_path).write_bytes(b"stand-in image tarball\n")
    return 0


def pushed_digest(reference: str) -> str:
    """The digest the crane stand-in reports for a pushed image: one per tag, stable."""
    return "sha256:" + hashlib.sha256(reference.encode()).hexdigest()


def crane(argv: list[str]) -> int:
    """crane: record; `auth login` reads the password from stdin; `push` prints ref@digest
    (pushed_digest of the tag); `index append` prints the index's ref@STANDIN_DIGEST."""
    stdin = sys.stdin.read() if "--password-stdin" in argv else None
    record("crane", argv, stdin=stdin)
    if argv and argv[0] == "push":
        reference = argv[-1].rsplit(":", 1)[0]
        print(f"{reference}@{pushed_digest(argv[-1])}")
    if argv[:2] == ["index", "append"]:
        reference = argv[argv.index("--tag") + 1].rsplit(":", 1)[0]
        print(f"{reference}@{os.environ['STANDIN_DIGEST']}")
    return 0


# Fulcio's GitLab issuers and the audience it requires (sigstore/fulcio,
# config/identity/config.yaml: type ci-provider, ci-provider gitlab-pipeline, client-id
# sigstore); the certificate's identity is "https://" + the token's ci_config_ref_uri claim.
FULCIO_GITLAB_ISSUERS = {"https://gitlab.com", "https://ops.gitlab.net", "https://dev.gitlab.org"}


def jwt_claims(token: str) -> dict:
    """The claims of a JWT (not verified: the stand-in has no GitLab signing key)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def cosign(argv: list[str]) -> int:
    """cosign, Sigstore stand-in: records each call; `login` reads the password from stdin.
    Keyless `sign` (no --key) exchanges SIGSTORE_ID_TOKEN as Fulcio does, refusing a token
    Fulcio refuses (issuer not configured, audience not sigstore, no ci_config_ref_uri);
    `verify` refuses the digests listed in STANDIN_UNSIGNED."""
    stdin = sys.stdin.read() if "--password-stdin" in argv else None
    record("cosign", argv, stdin=stdin)
    if argv[:1] == ["sign"] and "--key" not in argv:
        token = os.environ.get("SIGSTORE_ID_TOKEN", "")
        if not token:
            print("Error: signing: no identity token (keyless)", file=sys.stderr)
            return 1
        claims = jwt_claims(token)
        if claims.get("iss") not in FULCIO_GITLAB_ISSUERS:
            print(f"Error: fulcio: unsupported issuer {claims.get('iss')!r}", file=sys.stderr)
            return 1
        if claims.get("aud") != "sigstore":
            print(
                f'Error: oidc: expected audience "sigstore" got {claims.get("aud")!r}',
                file=sys.stderr,
            )
            return 1
        if not claims.get("ci_config_ref_uri"):
            print("Error: fulcio: token has no ci_config_ref_uri claim", file=sys.stderr)
            return 1
    if argv[:1] == ["verify"]:
        digest = argv[-1].rsplit("@", 1)[-1]
        if digest in os.environ.get("STANDIN_UNSIGNED", "").split():
            print("Error: no matching signatures:", file=sys.stderr)
            return 1
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
    }
    sys.exit(tools[tool](sys.argv[1:]))
