"""The gateway's HTTP API as a client sees it: send, stream (resuming after a dropped connection),
run control and the observer API. Shared by the CLI, the TUI and the tests."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

log = logging.getLogger("magent2.client")

OK, AGENT_ERROR, TIMEOUT, SEND_FAILED, STREAM_FAILED, USAGE, CANCELLED = 0, 1, 2, 3, 4, 5, 6
REQUEST_TIMEOUT = httpx.Timeout(10.0)  # every call but the stream, whatever the client's default
# A message's outcome: the last event of its reply, and the exit code it means.
FINAL = {"output": OK, "error": AGENT_ERROR, "cancelled": CANCELLED}


def new_conversation_id() -> str:
    return f"conv-{uuid.uuid4().hex[:12]}"


class ClientFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Client:
    base_url: str
    agent: str
    sender: str
    token: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def send(
        self, http: httpx.AsyncClient, conversation_id: str, content: str, *, attempts: int = 5
    ) -> dict[str, Any]:
        """POST /send with an id of our own, so that a send whose outcome is unknown (a lost
        connection, a 503) can be retried without the message running twice."""
        body = {
            "id": str(uuid.uuid4()),
            "conversation_id": conversation_id,
            "sender": self.sender,
            "recipient": f"agent:{self.agent}",
            "type": "message",
            "content": content,
        }
        for attempt in range(1, attempts + 1):
            try:
                response = await http.post(
                    f"{self.base_url}/send", json=body, headers=self.headers(), timeout=REQUEST_TIMEOUT
                )
            except httpx.HTTPError as exc:
                failure = f"cannot reach {self.base_url}: {exc}"
            else:
                if response.status_code == 202:
                    result: dict[str, Any] = response.json()
                    return result
                failure = f"HTTP {response.status_code}: {_detail(response)}"
                if response.status_code != 503:
                    break
            if attempt < attempts:
                log.info("send %s failed (%s); retrying with the same id", body["id"], failure)
                await asyncio.sleep(0.25 * 2 ** (attempt - 1))
        raise ClientFailure(SEND_FAILED, f"send failed: {failure}")

    async def cancel(self, http: httpx.AsyncClient, conversation_id: str) -> str:
        """Ask the gateway to stop the conversation's running run; what it answered."""
        try:
            response = await http.post(
                f"{self.base_url}/conversations/{conversation_id}/cancel",
                json={"agent": self.agent, "reason": "cancelled from the client"},
                headers=self.headers(),
                timeout=REQUEST_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            return f"cancel failed: {exc}"
        return "cancelling …" if response.status_code == 202 else f"cancel: {_detail(response)}"

    async def decide(self, http: httpx.AsyncClient, request: dict[str, Any], approve: bool) -> str:
        url = f"{self.base_url}/conversations/{request['conversation_id']}/approvals/{request['call_id']}"
        body = {"decision": "approve" if approve else "reject", "reason": "decided in the client"}
        try:
            response = await http.post(url, json=body, headers=self.headers(), timeout=REQUEST_TIMEOUT)
        except httpx.HTTPError as exc:
            return f"decision failed: {exc}"
        if response.status_code == 200:
            return "approved" if approve else "rejected"
        return f"decision: {_detail(response)}"

    async def events(
        self,
        http: httpx.AsyncClient,
        conversation_id: str,
        cursor: str,
        *,
        max_events: int | None = None,
        resume_for_s: float = 30.0,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(cursor, event) after `cursor`, for as long as the caller reads. A connection that drops
        is resumed from the last cursor (nothing lost or doubled) for up to `resume_for_s` of
        failed attempts; the first connection failing, or an HTTP error, raises `ClientFailure`."""
        connected, failing_since, delay = False, 0.0, 0.2
        seen = 0
        while True:
            params: dict[str, str | int] = {"last_id": cursor}
            if max_events:
                params["max_events"] = max_events - seen
            try:
                async with aconnect_sse(
                    http,
                    "GET",
                    f"{self.base_url}/stream/{conversation_id}",
                    params=params,
                    headers=self.headers(),
                ) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                        raise ClientFailure(
                            STREAM_FAILED,
                            f"stream failed: HTTP {source.response.status_code}: {_detail(source.response)}",
                        )
                    connected, failing_since, delay = True, 0.0, 0.2
                    async for sse in source.aiter_sse():
                        if not sse.data:  # the retry: hint, not an event
                            continue
                        cursor = sse.id or cursor
                        seen += 1
                        yield cursor, json.loads(sse.data)
                    if max_events and seen >= max_events:
                        return
            except (httpx.HTTPError, SSEError) as exc:
                loop = asyncio.get_running_loop()
                failing_since = failing_since or loop.time()
                if not connected or loop.time() - failing_since > resume_for_s:
                    raise ClientFailure(STREAM_FAILED, f"stream failed: {exc}") from exc
                log.info("stream of %s dropped (%s); resuming after %s", conversation_id, exc, cursor)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- the observer API -------------------------------------------------------------------------
    async def get(self, http: httpx.AsyncClient, path: str, **params: Any) -> Any:
        """GET a JSON resource; `ClientFailure` names what went wrong."""
        try:
            response = await http.get(
                f"{self.base_url}{path}",
                params={k: v for k, v in params.items() if v is not None},
                headers=self.headers(),
                timeout=REQUEST_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise ClientFailure(STREAM_FAILED, f"cannot reach {self.base_url}: {exc}") from exc
        if response.status_code != 200:
            raise ClientFailure(
                STREAM_FAILED, f"GET {path}: HTTP {response.status_code}: {_detail(response)}"
            )
        return response.json()

    async def healthy(self, http: httpx.AsyncClient) -> bool:
        try:
            return (await http.get(f"{self.base_url}/ready", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text
