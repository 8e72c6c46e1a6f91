"""What must hold before an Agent's children are applied; each problem says what to fix."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from magent2.contracts import AgentSpec, describe_tools, unknown_tools
from magent2_operator import GROUP, PLURAL, VERSION


class SpecProblem(Exception):
    """The Agent cannot be reconciled as it is; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _has_key(read: Any, name: str, namespace: str, key: str, kind: str) -> None:
    try:
        obj = read(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise SpecProblem(
                f"{kind}NotFound", f"{kind} {namespace}/{name} does not exist; create it"
            ) from exc
        raise
    if key not in (obj.data or {}):
        raise SpecProblem(f"{kind}KeyNotFound", f"{kind} {namespace}/{name} has no key {key!r}")


def check(
    api: client.ApiClient, name: str, namespace: str, uid: str, spec: AgentSpec, *, namespaces: list[str]
) -> None:
    core = client.CoreV1Api(api)
    servers = [server.name for server in spec.mcp_servers]
    if unknown := unknown_tools(spec.tools or [], servers):
        raise SpecProblem("UnknownTool", f"unknown tools {unknown}; known: {describe_tools(servers)}")
    for api_key in (
        spec.openai.api_key_secret_ref,
        spec.provider.api_key_secret_ref if spec.provider else None,
    ):
        if api_key is not None and not api_key.optional:  # optional: a missing Secret leaves the key unset
            _has_key(core.read_namespaced_secret, api_key.name, namespace, api_key.key, "Secret")
    source = spec.instructions_from
    if source is not None and source.config_map_key_ref is not None:
        ref = source.config_map_key_ref
        _has_key(core.read_namespaced_config_map, ref.name, namespace, ref.key, "ConfigMap")
    if source is not None and source.secret_key_ref is not None:
        ref = source.secret_key_ref
        _has_key(core.read_namespaced_secret, ref.name, namespace, ref.key, "Secret")
    _check_unique_agent_name(api, name, namespace, uid, spec, namespaces)


def _check_unique_agent_name(
    api: client.ApiClient, name: str, namespace: str, uid: str, spec: AgentSpec, namespaces: list[str]
) -> None:
    """agentName is the inbox on the shared Redis: the oldest Agent keeps it, later ones are Degraded
    (they recover on their own once the older one is renamed or deleted)."""
    custom = client.CustomObjectsApi(api)
    if namespaces:
        pages = [custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL) for ns in namespaces]
    else:
        pages = [custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)]
    items: list[dict[str, Any]] = [item for page in pages for item in page["items"]]  # type: ignore[index]
    wanted = spec.agent_name or name
    mine = None
    rivals = []
    for item in items:
        meta = item["metadata"]
        if ((item.get("spec") or {}).get("agentName") or meta["name"]) != wanted:
            continue
        # oldest first; creation times have one-second resolution, so ties go by namespace/name
        key = (meta["creationTimestamp"], meta["namespace"], meta["name"])
        if meta["uid"] == uid:
            mine = key
        else:
            rivals.append((key, f"{meta['namespace']}/{meta['name']}"))
    older = [who for key, who in rivals if mine is None or key < mine]
    if older:
        raise SpecProblem(
            "AgentNameConflict",
            f"agentName {wanted!r} is already used by Agent {older[0]} on the same Redis; "
            "choose another agentName",
        )
