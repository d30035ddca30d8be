"""Measure the local control plane: start time cold and warm, and the chart's deploy time.

    python3 -m hack.bench_cluster [--runs N]

Cold: a fresh state folder and an empty Go module cache, so the CRDs and kwok's stages come
through the module proxy, as on a fresh machine whose tools are already built. Warm: the
same again with the module cache filled. Then `helm upgrade --install --wait` of the chart
with the README's values into `dev`, as the dev agent, with Helm 3 and Helm 4 (pods
simulated by kwok), N times each; the first install and the upgrades are reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from hack.cluster import AGENT_CONTEXT, HELMS, Cluster, ClusterError, readme_install

ROOT = Path(__file__).resolve().parent.parent


def timed_start(folder: Path) -> tuple[Cluster, float]:
    """Start a cluster in folder; return it and the seconds until it was ready."""
    cluster = Cluster(folder)
    began = time.monotonic()
    cluster.start()
    return cluster, time.monotonic() - began


def deploy_seconds(cluster: Cluster, helm: Path, release: str, home: Path) -> float:
    """One `helm upgrade --install --wait` of the chart as the dev agent, in seconds."""
    env = dict(
        os.environ, HELM_CACHE_HOME=str(home), HELM_CONFIG_HOME=str(home), HELM_DATA_HOME=str(home)
    )
    args = [
        str(helm),
        f"--kubeconfig={cluster.kubeconfig}",
        f"--kube-context={AGENT_CONTEXT.format(env='dev')}",
    ]
    args += readme_install(release)
    began = time.monotonic()
    subprocess.run(args, check=True, capture_output=True, env=env, timeout=240)
    return time.monotonic() - began


def main() -> None:
    """Print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="deploys per Helm (default 3)")
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        base = Path(tmp)
        os.environ["GOMODCACHE"] = str(base / "gomodcache")
        try:
            cold, cold_s = timed_start(base / "cold")
            cold.stop()
            warm, warm_s = timed_start(base / "warm")
        except ClusterError as error:
            raise SystemExit(str(error)) from error
        try:
            print(f"control plane start, cold (empty module cache): {cold_s:.1f} s")
            print(f"control plane start, warm: {warm_s:.1f} s")
            with warm.playing_cert_manager("dev"):
                for major, helm in HELMS.items():
                    name, release = f"Helm {major}", f"bench-{major}"
                    times = [
                        deploy_seconds(warm, helm, release, base / release) for _ in range(runs)
                    ]
                    upgrades = times[1:] or times
                    print(
                        f"{name} upgrade --install --wait: install {times[0]:.1f} s,"
                        f" upgrade median {statistics.median(upgrades):.1f} s (n={len(upgrades)})"
                    )
        finally:
            warm.stop()
            subprocess.run(
                ["chmod", "-R", "u+w", str(base)], check=False
            )  # the module cache is read-only


if __name__ == "__main__":
    main()
