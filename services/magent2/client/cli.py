"""`magent2 client`: send a message and stream the reply, or chat interactively (line editing,
history, `/help` commands).

Exit codes: 0 ok, 1 the agent answered with an error event, 2 timeout, 3 send failed,
4 stream connect failed, 5 usage, 6 cancelled."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

import httpx

from magent2.client.http import (
    FINAL,
    OK,
    STREAM_FAILED,
    TIMEOUT,
    USAGE,
    Client,
    ClientFailure,
    new_conversation_id,
)

log = logging.getLogger("magent2.client")
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


async def follow_reply(
    client: Client,
    http: httpx.AsyncClient,
    conversation_id: str,
    cursor: str,
    *,
    out: Renderer,
    max_events: int | None,
    ask: Callable[[dict[str, Any]], Awaitable[bool | None]] | None = None,
) -> int:
    """Render events after `cursor` until this message's outcome; its exit code."""
    seen = 0
    async for _, event in client.events(http, conversation_id, cursor, max_events=max_events):
        seen += 1
        out.event(event)
        if event["event"] == "approval_required" and ask is not None:
            approved = await ask(event)
            if approved is not None:
                print(await client.decide(http, event, approved), file=sys.stderr)
        if event["event"] in FINAL or (max_events and seen >= max_events):
            return FINAL.get(event["event"], OK)
    return OK if max_events and seen >= max_events else STREAM_FAILED


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
                follow_reply(
                    client,
                    http,
                    conversation_id,
                    sent["cursor"],
                    out=renderer,
                    max_events=args.max_events,
                    ask=ask,
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


COMMANDS = {
    "/help": "this list",
    "/agent <name>": "talk to another agent from now on",
    "/new": "start a new conversation",
    "/conv [id]": "show the conversation id, or switch to another conversation",
    "/agents": "the agents and their live status",
    "/quit": "leave (also Ctrl-D)",
}


def _history_file() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "magent2" / "client_history"


def _line_editing() -> Callable[[], None]:
    """Arrow keys, Ctrl-R and a history kept across sessions where readline exists; returns what
    saves the history."""
    try:
        import readline
    except ImportError:  # not on every platform; plain input() still works
        return lambda: None
    history = _history_file()
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(1000)

    def save() -> None:
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)

    return save


async def command(client: Client, line: str, conversation_id: str) -> str | None:
    """Run a /command (never sent to the agent); the conversation to use next, None to leave."""
    name, _, argument = line.strip().partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return None
    if name == "/help":
        width = max(map(len, COMMANDS))
        print("\n".join(f"  {c.ljust(width)}  {what}" for c, what in COMMANDS.items()), file=sys.stderr)
    elif name == "/agent" and argument:
        client.agent = argument.removeprefix("agent:")
        print(f"talking to {client.agent}", file=sys.stderr)
    elif name == "/new":
        conversation_id = new_conversation_id()
        print(f"new conversation {conversation_id}", file=sys.stderr)
    elif name == "/conv":
        conversation_id = argument or conversation_id
        print(f"conversation {conversation_id}", file=sys.stderr)
    elif name == "/agents":
        async with httpx.AsyncClient(timeout=10) as http:
            try:
                agents = (await client.get(http, "/agents"))["agents"]
            except ClientFailure as failure:
                agents = []
                print(failure, file=sys.stderr)
        for agent in agents:
            print(
                f"  {agent['name']}: {agent['workers_alive']} worker(s), backlog {agent['backlog']}, "
                f"running {agent['in_flight']}, awaiting approval {agent['awaiting_approval']}",
                file=sys.stderr,
            )
    else:
        print(f"unknown command {line.strip()!r}; /help lists them", file=sys.stderr)
    return conversation_id


async def interactive(client: Client, args: argparse.Namespace, conversation_id: str) -> int:
    print(
        f"chatting with {client.agent} in {conversation_id} "
        "(/help for commands; Ctrl-C stops a reply; Ctrl-D or /quit to leave)",
        file=sys.stderr,
    )
    save_history = _line_editing()
    loop = asyncio.get_running_loop()
    status = OK
    try:
        while True:
            try:
                line = await loop.run_in_executor(None, lambda: input("you> "))
            except EOFError:
                print(file=sys.stderr)
                break
            if line.strip().startswith("/"):
                switched = await command(client, line, conversation_id)
                if switched is None:
                    break
                conversation_id = switched
                continue
            if not line.strip():
                continue
            sys.stdout.write(f"{client.agent}> ")
            try:
                status = await one_message(client, args, conversation_id, line, ctrl_c_cancels=True)
            except ClientFailure as failure:
                print(failure, file=sys.stderr)
                status = failure.code
    finally:
        save_history()
    print(f"conversation {conversation_id} (continue it with --conv {conversation_id})", file=sys.stderr)
    return status


def main(argv: list[str] | None = None, prog: str = "magent2 client") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    if args.max_events is not None and args.max_events < 1:
        build_parser(prog).error("--max-events must be at least 1")
    if args.timeout <= 0:
        build_parser(prog).error("--timeout must be positive")
    client = Client(args.base_url.rstrip("/"), args.agent, args.sender, args.token)
    conversation_id = args.conv or new_conversation_id()
    started = time.perf_counter()
    try:
        if args.message is None:
            return asyncio.run(interactive(client, args, conversation_id))
        code = asyncio.run(one_message(client, args, conversation_id, args.message))
        if not args.quiet and not args.json:
            print(
                f"conversation {conversation_id} (continue it with --conv {conversation_id})", file=sys.stderr
            )
    except ClientFailure as failure:
        print(failure, file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return OK
    log.info("done in %.3fs", time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
