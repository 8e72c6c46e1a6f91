"""The Agent CRD, generated from the runtime's `AgentSpec`: one source of truth for local mode and
the cluster. `python -m magent2_operator.crd` prints it; crds/ holds the output (a test checks)."""

from __future__ import annotations

import sys
from typing import Any

import yaml

from magent2.contracts import AgentSpec
from magent2_operator import GROUP, KIND, PLURAL, VERSION

# pydantic model validators, restated as CEL so the API server enforces them too
CEL_RULES: dict[str, list[dict[str, str]]] = {
    "AgentSpec": [
        {
            "rule": "!(has(self.instructions) && has(self.instructionsFrom))",
            "message": "set either instructions or instructionsFrom, not both",
        },
        {
            "rule": "!has(self.provider) || self.model.startsWith('litellm/')",
            "message": "provider is for litellm/<provider>/<model> models; use openai otherwise",
        },
    ],
    "InstructionsFrom": [
        {
            "rule": "has(self.configMapKeyRef) != has(self.secretKeyRef)",
            "message": "instructionsFrom needs exactly one of configMapKeyRef or secretKeyRef",
        }
    ],
    "AutoscalingSpec": [
        {
            "rule": "self.maxReplicas >= self.minReplicas",
            "message": "maxReplicas must be at least minReplicas",
        }
    ],
    "McpServer": [
        {
            "rule": "has(self.command) != has(self.url)",
            "message": "an MCP server needs exactly one of command (stdio) or url (http)",
        }
    ],
}

CONDITION = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "enum": ["Ready", "Progressing", "Degraded", "Autoscaling"]},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
    },
}

STATUS = {
    "type": "object",
    "properties": {
        "observedGeneration": {"type": "integer"},
        "conditions": {
            "type": "array",
            "items": CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "replicas": {"type": "integer"},
        "readyReplicas": {"type": "integer"},
        "selector": {"type": "string", "description": "The workers' label selector (scale subresource)"},
        "inbox": {"type": "string"},
        "backlog": {"type": "integer", "description": "Inbox entries not yet delivered to a worker"},
        "inFlight": {"type": "integer", "description": "Inbox entries delivered and not finished"},
        "oldestPendingSeconds": {"type": "number", "description": "Age of the oldest unfinished entry"},
        "deadLetters": {"type": "integer", "description": "Entries in the agent's dead-letter stream"},
    },
}


def structural(schema: dict[str, Any], defs: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A pydantic JSON schema as a Kubernetes structural schema (OpenAPI v3.0 subset)."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return structural(defs[ref], defs, ref)
    if "anyOf" in schema:  # Optional[X]: absent instead of null
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        merged = {**structural(options[0], defs), **{k: v for k, v in schema.items() if k not in ("anyOf",)}}
        return structural({k: v for k, v in merged.items() if not (k == "default" and v is None)}, defs, name)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "$defs", "additionalProperties", "properties", "items"):
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if "properties" in schema:
        out["properties"] = {key: structural(value, defs) for key, value in schema["properties"].items()}
    if "items" in schema:
        out["items"] = structural(schema["items"], defs)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = structural(extra, defs)
    elif extra is True and "properties" not in schema:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if name in CEL_RULES:
        out["x-kubernetes-validations"] = CEL_RULES[name]
    return out


def spec_schema() -> dict[str, Any]:
    schema = AgentSpec.model_json_schema(by_alias=True)
    return structural(schema, schema.get("$defs", {}), "AgentSpec")


def agent_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "magent2"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": "agent",
                "shortNames": ["mag"],
                "categories": ["magent2"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        # `kubectl scale` and HPAs set spec.replicas (ignored while spec.autoscaling is set)
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Agent", "type": "string", "jsonPath": ".spec.agentName"},
                        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
                        {"name": "Backlog", "type": "integer", "jsonPath": ".status.backlog"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An LLM agent: model, instructions, tools, worker Deployment.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": STATUS,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# Generated from magent2.contracts.AgentSpec by `python -m magent2_operator.crd`. Do not edit.\n"
    )
    return header + yaml.safe_dump(agent_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
