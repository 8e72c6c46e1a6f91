"""Server-side apply of child objects, skipping the call when the live object already matches."""

from __future__ import annotations

from typing import Any

from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

FIELD_MANAGER = "magent2-operator"


def covers(live: Any, desired: Any) -> bool:
    """True when every field we set has our value in `live` (the server may add more)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and covers(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(covers, live, desired))
    if (isinstance(desired, int | float) and isinstance(live, str)) or (
        isinstance(desired, str) and isinstance(live, int)
    ):
        return str(live) == str(desired)
    return bool(live == desired)


class Applier:
    def __init__(self, api: client.ApiClient) -> None:
        self.dynamic = dynamic.DynamicClient(api)
        self.writes = 0  # applies sent, for tests and metrics

    def _resource(self, manifest: dict[str, Any]) -> Any:
        return self.dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])

    def get(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        meta = manifest["metadata"]
        try:
            found = self._resource(manifest).get(name=meta["name"], namespace=meta["namespace"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.to_dict())

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Apply unless the live object already covers `manifest`; return the live object."""
        live = self.get(manifest)
        if live is not None and covers(live, manifest):
            return live
        self.writes += 1
        applied = self._resource(manifest).server_side_apply(
            body=manifest,
            name=manifest["metadata"]["name"],
            namespace=manifest["metadata"]["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        return dict(applied.to_dict())

    def delete(self, manifest: dict[str, Any]) -> bool:
        """Delete the object if it exists (or its kind does); whether there was one."""
        meta = manifest["metadata"]
        try:
            self._resource(manifest).delete(name=meta["name"], namespace=meta["namespace"])
        except ResourceNotFoundError:
            return False  # the kind is not installed: nothing of it can exist
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        self.writes += 1
        return True
