"""KEDA on the node as its own manifests install it: the module's `config/minimal` (CRDs, RBAC,
the operator, the metrics adapter behind the `v1beta1.external.metrics.k8s.io` APIService), with
the image `hack/node/images.sh` built from `hack/tools.sh node`'s binaries instead of KEDA's."""

from __future__ import annotations

import json
import shutil

from tests.k8s.keda import KEDA_VERSION, keda_module
from tests.node.node import Node, NodeError, images

NAMESPACE = "keda"
DEPLOYMENTS = ("keda-operator", "keda-metrics-apiserver")
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"


def install_keda(node: Node, timeout_s: int = 300) -> None:
    image = images()["KEDA_IMAGE"]
    repository, tag = image.rsplit(":", 1)
    if tag != KEDA_VERSION:
        raise NodeError(
            f"the node's KEDA image is {tag}, the tests pin {KEDA_VERSION}: run `make node-images`"
        )
    overlay = node.workdir / "keda"
    shutil.copytree(keda_module() / "config", overlay / "config")
    never_pull = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"}
    ]
    (overlay / "kustomization.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["config/minimal"],
                "images": [
                    {"name": f"ghcr.io/kedacore/{name}", "newName": repository, "newTag": tag}
                    for name in ("keda", "keda-metrics-apiserver")
                ],
                "patches": [
                    {"target": {"kind": "Deployment", "name": name}, "patch": json.dumps(never_pull)}
                    for name in DEPLOYMENTS
                ],
            }
        )
    )
    node.kubectl("apply", "--server-side", "-k", str(overlay))
    for name in DEPLOYMENTS:
        node.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{name}", f"--timeout={timeout_s}s")
    node.kubectl(
        "wait", "--for=condition=Available", f"apiservice/{EXTERNAL_METRICS}", f"--timeout={timeout_s}s"
    )


def keda_report(node: Node, namespace: str, scaled_object: str) -> str:
    """What KEDA says about a ScaledObject, for a failing test's message."""
    status = node.kubectl(
        "-n", namespace, "get", "scaledobject", scaled_object, "-o", "jsonpath={.status}", check=False
    )
    hpa = node.kubectl("-n", namespace, "get", "hpa", "-o", "wide", check=False)
    logs = node.kubectl("-n", NAMESPACE, "logs", "deployment/keda-operator", "--tail=30", check=False)
    return f"ScaledObject status: {status.stdout}{status.stderr}\nHPAs: {hpa.stdout}\nKEDA operator: {logs.stdout[-4000:]}"
