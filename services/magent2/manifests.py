"""Agent manifests from YAML files, validated by the same model the operator uses."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from magent2.contracts import AgentManifest


class ManifestError(ValueError):
    pass


def default_manifest_text() -> str:
    return resources.files("magent2").joinpath("defaults/agents.yaml").read_text(encoding="utf-8")


def parse_manifests(text: str, source: str = "<string>") -> list[AgentManifest]:
    """Every Agent document in `text` (other kinds are skipped); errors name the document and field."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from exc
    manifests: list[AgentManifest] = []
    for number, doc in enumerate(documents, start=1):
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: document {number} is not a mapping")
        if doc.get("kind") != "Agent":
            continue
        try:
            manifests.append(AgentManifest.model_validate(doc))
        except ValidationError as exc:
            name = (doc.get("metadata") or {}).get("name", f"document {number}")
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ManifestError(f"{source}: Agent {name}: {problems}") from exc
    names = [m.agent_name for m in manifests]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ManifestError(f"{source}: agentName used by more than one Agent: {', '.join(duplicates)}")
    if not manifests:
        raise ManifestError(f"{source}: no Agent resources found")
    return manifests


def load_manifests(path: str | Path | None) -> list[AgentManifest]:
    if path is None:
        return parse_manifests(default_manifest_text(), "embedded default")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_manifests(text, str(path))
