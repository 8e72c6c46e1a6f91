"""`python -m bench.operator`: the operator against the real test control plane.

Time from Agent create to its Deployment created and status written, for one Agent at a time and for
200 created at once; the operator's memory with 200 Agents. Needs `make tools`."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.__main__ import pct, print_table
from tests.k8s.controlplane import ROOT, ControlPlane

Row = tuple[str, str, str]


def agent(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "magent2.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"agentName": name.replace("-", "_"), "tools": ["todo"]},
    }


def wait_done(
    api: client.ApiClient, namespace: str, created: dict[str, float], timeout: float = 300
) -> dict[str, float]:
    """Poll until every Agent has its Deployment and status.inbox; return when each was first seen done."""
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(created) and time.monotonic() < deadline:
        deployments = {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items}
        agents = custom.list_namespaced_custom_object("magent2.dev", "v1alpha1", namespace, "agents")["items"]
        now = time.monotonic()
        for item in agents:
            name = item["metadata"]["name"]
            if (
                name in created
                and name not in done
                and (item.get("status") or {}).get("inbox")
                and f"{name}-worker" in deployments
            ):
                done[name] = now - created[name]
        time.sleep(0.05)
    if len(done) < len(created):
        raise TimeoutError(f"only {len(done)} of {len(created)} Agents reconciled")
    return done


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--single", type=int, default=20, help="Agents created one at a time")
    parser.add_argument("--burst", type=int, default=200, help="Agents created at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        plane = ControlPlane(Path(workdir))
        plane.start()
        operator = None
        try:
            plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "agents.magent2.dev.yaml"))
            plane.kubectl("wait", "--for=condition=Established", "crd/agents.magent2.dev", "--timeout=30s")
            operator = plane.start_operator()
            api = config.new_client_from_config(str(plane.kubeconfig))
            custom = client.CustomObjectsApi(api)
            idle_rss = 0.0
            singles: list[float] = []
            for i in range(args.single + 1):
                began = time.monotonic()
                custom.create_namespaced_custom_object(
                    "magent2.dev", "v1alpha1", "default", "agents", agent(f"one-{i}")
                )
                latency = wait_done(api, "default", {f"one-{i}": began})[f"one-{i}"]
                if i:  # the first includes the operator's start-up
                    singles.append(latency)
                idle_rss = rss_mib(operator.pid)
            plane.kubectl("create", "namespace", "burst")
            created: dict[str, float] = {}
            began = time.monotonic()
            for i in range(args.burst):
                created[f"a-{i}"] = time.monotonic()
                custom.create_namespaced_custom_object(
                    "magent2.dev", "v1alpha1", "burst", "agents", agent(f"a-{i}")
                )
            burst = list(wait_done(api, "burst", created).values())
            total = time.monotonic() - began
            time.sleep(2)
            rss = rss_mib(operator.pid)
        finally:
            if operator is not None:
                operator.terminate()
                operator.wait(20)
            plane.stop()
    rows: list[Row] = [
        (
            f"create -> Deployment + status, one at a time ({len(singles)})",
            "p50 / p99 ms",
            f"{statistics.median(singles) * 1000:.0f} / {pct(singles, 0.99) * 1000:.0f}",
        ),
        (
            f"create -> Deployment + status, {args.burst} at once",
            "p50 / p99 s",
            f"{pct(burst, 0.5):.2f} / {pct(burst, 0.99):.2f}",
        ),
        (f"{args.burst} at once", "all reconciled in s", f"{total:.1f}"),
        (
            "operator memory",
            f"RSS MiB with {args.single + 1} / {args.single + 1 + args.burst} Agents",
            f"{idle_rss:.0f} / {rss:.0f}",
        ),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
