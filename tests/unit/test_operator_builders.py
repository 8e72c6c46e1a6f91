"""Golden tests of the operator's pure builders, and the CRD as generated from AgentSpec."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from magent2.contracts import AgentSpec
from magent2_operator import builders
from magent2_operator.apply import covers
from magent2_operator.crd import render
from magent2_operator.scaling import scaling_children
from magent2_operator.settings import OperatorSettings

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[2]
SETTINGS = OperatorSettings(WORKER_IMAGE="ghcr.io/example/magent2-worker:1.0", REDIS_URL_SECRET="redis/url")

MINIMAL: dict[str, Any] = {}
MAXIMAL: dict[str, Any] = {
    "agentName": "OpsAgent",
    "model": "gpt-4.1",
    "instructionsFrom": {"secretKeyRef": {"name": "prompts", "key": "ops"}},
    "tools": ["terminal", "todo", "chat", "time"],
    "terminal": {
        "allowedCommands": ["ls", "kubectl"],
        "timeoutSeconds": 10,
        "outputCapBytes": 4096,
        "functionOutputMaxChars": 500,
        "redactSubstrings": ["corp-secret"],
        "redactPatterns": ["AKIA[A-Z0-9]{16}"],
    },
    "mcpServers": [{"name": "time", "command": ["mcp-server-time"], "allowTools": ["get_current_time"]}],
    "modelSettings": {"temperature": 0.2, "maxTurns": 20},
    "openai": {"apiKeySecretRef": {"name": "openai", "key": "api-key"}, "baseURL": "http://llm:8000/v1"},
    "replicas": 3,
    "concurrency": 16,
    "image": "ghcr.io/example/custom-worker:2.0",
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    "nodeSelector": {"pool": "agents"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "agents", "effect": "NoSchedule"}],
    "serviceAccountName": "ops-agent",
}


AUTOSCALED: dict[str, Any] = {
    "agentName": "Burst",
    "autoscaling": {"minReplicas": 0, "maxReplicas": 8, "targetBacklogPerReplica": 5},
}
KEDA_SETTINGS = SETTINGS.model_copy(
    update={
        "keda_redis_address": "magent2-redis:6379",
        "keda_redis_password_secret": "magent2-redis/password",
    }
)


@pytest.mark.parametrize(
    ("label", "spec"), [("minimal", MINIMAL), ("maximal", MAXIMAL), ("autoscaled", AUTOSCALED)]
)
def test_children_match_golden_files(label: str, spec: dict[str, Any]) -> None:
    agent = AgentSpec.model_validate(spec)
    objects = builders.children("my-agent", "agents", "uid-1234", agent, KEDA_SETTINGS)
    objects += scaling_children("my-agent", "agents", "uid-1234", agent, KEDA_SETTINGS)
    rendered = yaml.safe_dump_all(objects, sort_keys=True)
    golden = GOLDEN / f"children-{label}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), "builders changed: review, then UPDATE_GOLDEN=1 pytest tests/unit"


def test_every_child_is_owned_and_labelled() -> None:
    for obj in builders.children("a", "ns", "uid-1", AgentSpec(), SETTINGS):
        [owner] = obj["metadata"]["ownerReferences"]
        assert owner["kind"] == "Agent" and owner["uid"] == "uid-1" and owner["controller"] is True
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "magent2-operator"


def test_the_deployment_is_locked_down() -> None:
    *_, deployment = builders.children("a", "ns", "uid-1", AgentSpec.model_validate(MAXIMAL), SETTINGS)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    key = next(e for e in container["env"] if e["name"] == "OPENAI_API_KEY")
    assert key == {
        "name": "OPENAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}},
    }
    assert "sk-" not in yaml.safe_dump(deployment)


def test_changing_instructions_rolls_the_pods() -> None:
    def annotation(instructions: str) -> str:
        *_, deployment = builders.children("a", "ns", "u", AgentSpec(instructions=instructions), SETTINGS)
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["magent2.dev/config-checksum"])

    assert annotation("be brief") != annotation("be thorough")


def test_paused_scales_to_zero() -> None:
    *_, deployment = builders.children("a", "ns", "u", AgentSpec(paused=True, replicas=4), SETTINGS)
    assert deployment["spec"]["replicas"] == 0


def test_covers_ignores_server_defaults_but_not_our_fields() -> None:
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "w", "cpu": "1"}]}}}
    live = {
        "spec": {
            "replicas": 1,
            "paused": False,
            "template": {"containers": [{"name": "w", "cpu": 1, "x": 2}]},
        }
    }
    assert covers(live, desired)
    assert not covers({"spec": {"replicas": 5, "template": live["spec"]["template"]}}, desired)


def test_crd_file_is_generated_from_agent_spec() -> None:
    assert (ROOT / "crds" / "agents.magent2.dev.yaml").read_text() == render(), (
        "crds/ is stale: python -m magent2_operator.crd > crds/agents.magent2.dev.yaml"
    )


def test_crd_and_agent_spec_agree_field_by_field() -> None:
    crd = yaml.safe_load(render())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(schema["properties"]) == {
        field.alias or name for name, field in AgentSpec.model_fields.items()
    }
    assert schema["properties"]["replicas"] == {"default": 1, "maximum": 100, "minimum": 0, "type": "integer"}
    assert (
        schema["properties"]["agentName"]["pattern"]
        == AgentSpec.model_fields["agent_name"].metadata[0].pattern
    )
