"""`magent2 client`: send a message and stream the reply, or chat interactively.

Exit codes: 0 ok, 1 the agent answered with an error event, 2 timeout, 3 send failed,
4 stream connect failed, 5 usage."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import httpx
from httpx_sse import SSEError, aconnect_sse

log = logging.getLogger("magent2.client")
OK, AGENT_ERROR, TIMEOUT, SEND_FAILED, STREAM_FAILED, USAGE, CANCELLED = 0, 1, 2, 3, 4, 5, 6
DEFAULT_BASE_URL = "http://localhost:8000"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = "magent2 client") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Talk to a magent2 agent through the gateway. Without --message: interactive chat.",
        epilog="exit codes: 0 ok, 1 agent error, 2 timeout, 3 send failed, 4 stream connect failed, 5 usage",
    )
    parser.add_argument("--message", "-m", help="send this one message, print the reply and exit")
    parser.add_argument("--conv", help="conversation id (default: a new one)")
    parser.add_argument(
        "--agent",
        default=os.environ.get("MAGENT2_AGENT_NAME", "DevAgent"),
        help="agent name [MAGENT2_AGENT_NAME]",
    )
    parser.add_argument(
        "--sender", default=f"user:{os.environ.get('USER', 'cli')}", help="sender (user:<name>)"
    )
    parser.add_argument(
        "--base-url",
        default=os.environ.get("MAGENT2_BASE_URL", DEFAULT_BASE_URL),
        help=f"gateway URL [MAGENT2_BASE_URL, else {DEFAULT_BASE_URL}]",
    )
    parser.add_argument(
        "--token", default=os.environ.get("MAGENT2_API_TOKEN"), help="bearer token [MAGENT2_API_TOKEN]"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the reply (default 120)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only the final output")
    parser.add_argument("--json", action="store_true", help="print every event as one JSON line")
    parser.add_argument("--max-events", type=int, help="stop after this many events")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


# A message's outcome: the last event of its reply, and the exit code it means.
FINAL = {"output": OK, "error": AGENT_ERROR, "cancelled": CANCELLED}


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

    def _headers(self) -> dict[str, str]:
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
                response = await http.post(f"{self.base_url}/send", json=body, headers=self._headers())
            except httpx.HTTPError as exc:
                failure = f"cannot reach {self.base_url}: {exc}"
            else:
                if response.status_code == 202:
                    result: dict[str, Any] = response.json()
                    return result
                failure = f"HTTP {response.status_code}: {response.text}"
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
                headers=self._headers(),
            )
        except httpx.HTTPError as exc:
            return f"cancel failed: {exc}"
        return "cancelling …" if response.status_code == 202 else f"cancel: {response.json().get('detail')}"

    async def decide(self, http: httpx.AsyncClient, request: dict[str, Any], approve: bool) -> str:
        url = f"{self.base_url}/conversations/{request['conversation_id']}/approvals/{request['call_id']}"
        body = {"decision": "approve" if approve else "reject", "reason": "decided in the client"}
        try:
            response = await http.post(url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            return f"decision failed: {exc}"
        if response.status_code == 200:
            return "approved" if approve else "rejected"
        return f"decision: {response.json().get('detail')}"

    async def reply(
        self,
        http: httpx.AsyncClient,
        conversation_id: str,
        cursor: str,
        *,
        out: Renderer,
        max_events: int | None,
        ask: Callable[[dict[str, Any]], Awaitable[bool | None]] | None = None,
    ) -> int:
        """Stream events after `cursor` until this message's output or error."""
        params: dict[str, str | int] = {"last_id": cursor}
        if max_events:
            params["max_events"] = max_events
        seen = 0
        try:
            async with aconnect_sse(
                http,
                "GET",
                f"{self.base_url}/stream/{conversation_id}",
                params=params,
                headers=self._headers(),
            ) as source:
                if source.response.status_code != 200:
                    await source.response.aread()
                    raise ClientFailure(
                        STREAM_FAILED,
                        f"stream failed: HTTP {source.response.status_code}: {source.response.text}",
                    )
                async for sse in source.aiter_sse():
                    if not sse.data:  # the retry: hint, not an event
                        continue
                    event = json.loads(sse.data)
                    seen += 1
                    out.event(event)
                    if event["event"] == "approval_required" and ask is not None:
                        approved = await ask(event)
                        if approved is not None:
                            print(await self.decide(http, event, approved), file=sys.stderr)
                    if event["event"] in FINAL or (max_events and seen >= max_events):
                        return FINAL.get(event["event"], OK)
        except (httpx.HTTPError, SSEError) as exc:
            raise ClientFailure(STREAM_FAILED, f"stream failed: {exc}") from exc
        return OK if max_events and seen >= max_events else STREAM_FAILED


class Renderer:
    """Tokens as they arrive, tool steps as they happen; --quiet: the output only; --json: raw."""

    def __init__(
        self, *, quiet: bool, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        self.quiet, self.as_json, self.out, self.err = quiet, as_json, out, err
        self.streamed = False

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if self.as_json:
            self.out.write(json.dumps(event) + "\n")
        elif kind == "token" and not self.quiet:
            self.out.write(event["text"])
            self.streamed = True
        elif kind == "tool_step" and not self.quiet:
            self._tool_step(event)
        elif kind == "output":
            if not self.streamed or self.quiet:
                self.out.write(event["text"])
            self.out.write("\n")
            self.streamed = False
        elif kind == "approval_required":
            call = f"{event['tool']}({json.dumps(event.get('arguments', {}))})"
            self.err.write(f"\n[approval] {call} waits for approval (until {event['expires_at']})\n")
        elif kind == "approval_resolved":
            self.err.write(f"[approval] {event['decision']} by {event['by']} {event.get('reason') or ''}\n")
        elif kind == "cancelled":
            self.err.write("\n[cancelled]\n")
            self.streamed = False
        elif kind == "error":
            self.err.write(f"\nerror: {event['message']}{' (retryable)' if event.get('retryable') else ''}\n")
        self.out.flush()

    def _tool_step(self, event: dict[str, Any]) -> None:
        name, status = event["name"], event["status"]
        if status == "start":
            self.err.write(f"\n[tool] {name}({json.dumps(event.get('args', {}))}) …\n")
        elif status == "success":
            self.err.write(f"[tool] {name} ok in {event.get('duration_ms') or 0:.0f} ms\n")
        else:
            self.err.write(f"[tool] {name} failed: {event.get('error')}\n")
        self.err.flush()


async def one_message(
    client: Client,
    args: argparse.Namespace,
    conversation_id: str,
    content: str,
    *,
    ctrl_c_cancels: bool = False,
) -> int:
    """Send and stream the reply. `ctrl_c_cancels`: Ctrl-C stops the agent's run, not this program
    (the reply then ends with `cancelled`)."""
    renderer = Renderer(quiet=args.quiet, as_json=args.json)
    timeout = httpx.Timeout(10.0, read=None)
    async with httpx.AsyncClient(timeout=timeout) as http:
        sent = await client.send(http, conversation_id, content)
        if ctrl_c_cancels:
            loop = asyncio.get_running_loop()
            chores: set[asyncio.Task[None]] = set()

            async def cancel() -> None:
                print(await client.cancel(http, conversation_id), file=sys.stderr)

            def on_ctrl_c() -> None:
                chore = asyncio.create_task(cancel())
                chores.add(chore)
                chore.add_done_callback(chores.discard)

            loop.add_signal_handler(signal.SIGINT, on_ctrl_c)
        try:
            # A person at a terminal decides approvals inline; a script's run waits for someone else.
            ask = ask_in_terminal if ctrl_c_cancels or sys.stdin.isatty() else None
            return await asyncio.wait_for(
                client.reply(
                    http, conversation_id, sent["cursor"], out=renderer, max_events=args.max_events, ask=ask
                ),
                args.timeout,
            )
        except TimeoutError:
            raise ClientFailure(
                TIMEOUT, f"timed out after {args.timeout:g}s waiting for {client.agent}"
            ) from None
        finally:
            if ctrl_c_cancels:
                loop.remove_signal_handler(signal.SIGINT)


async def ask_in_terminal(request: dict[str, Any]) -> bool | None:
    """y/n at the prompt; None (leave it to someone else) when the input ends."""
    question = f"approve {request['tool']}({json.dumps(request.get('arguments', {}))})? [y/N] "
    try:
        answer = await asyncio.get_running_loop().run_in_executor(None, lambda: input(question))
    except EOFError:
        return None
    return answer.strip().lower() in ("y", "yes")


async def interactive(client: Client, args: argparse.Namespace, conversation_id: str) -> int:
    print(
        f"chatting with {client.agent} in {conversation_id} (Ctrl-C stops a reply; Ctrl-D or /quit to leave)",
        file=sys.stderr,
    )
    loop = asyncio.get_running_loop()
    status = OK
    while True:
        try:
            line = await loop.run_in_executor(None, lambda: input("you> "))
        except EOFError:
            print(file=sys.stderr)
            return status
        if line.strip() in ("/quit", "/exit"):
            return status
        if not line.strip():
            continue
        sys.stdout.write(f"{client.agent}> ")
        try:
            status = await one_message(client, args, conversation_id, line, ctrl_c_cancels=True)
        except ClientFailure as failure:
            print(failure, file=sys.stderr)
            status = failure.code


def main(argv: list[str] | None = None, prog: str = "magent2 client") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    if args.max_events is not None and args.max_events < 1:
        build_parser(prog).error("--max-events must be at least 1")
    if args.timeout <= 0:
        build_parser(prog).error("--timeout must be positive")
    client = Client(args.base_url.rstrip("/"), args.agent, args.sender, args.token)
    conversation_id = args.conv or f"conv-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    try:
        if args.message is None:
            return asyncio.run(interactive(client, args, conversation_id))
        code = asyncio.run(one_message(client, args, conversation_id, args.message))
    except ClientFailure as failure:
        print(failure, file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return OK
    log.info("done in %.3fs", time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
