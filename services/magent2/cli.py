"""`magent2`: up | gateway | worker | operator | client | dlq."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic_settings import BaseSettings

from magent2 import __version__, dlq
from magent2.loop import run
from magent2.settings import GatewaySettings, WorkerSettings
from magent2.startup import StartupError, configure_logging

EXIT_CODES = (
    "exit status: 0 stopped cleanly; 1 crashed; 2 cannot start (bad configuration, port in use, "
    "Redis unreachable at start-up)"
)


def _up(args: argparse.Namespace) -> int:
    from magent2 import local
    from magent2.manifests import ManifestError, load_manifests

    try:
        manifests = load_manifests(args.file)
        run(local.serve(manifests, host=args.host, port=args.port, redis_url=args.redis_url))
    except (ManifestError, StartupError) as exc:
        print(f"magent2 up: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _gateway(_: argparse.Namespace) -> int:
    from magent2.gateway.__main__ import main as gateway_main

    gateway_main()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from magent2.worker.__main__ import main as worker_main

    worker_main(args.log_level)
    return 0


def _tui(args: argparse.Namespace) -> int:
    try:
        from magent2.tui.app import main as tui_main
    except ImportError as exc:
        print(f"magent2 tui needs the tui extra: pip install 'magent2[tui]' ({exc})", file=sys.stderr)
        return 2
    return tui_main(args.base_url, args.agent, args.sender, args.token, args.conv)


def _operator(_: argparse.Namespace) -> int:
    try:
        from magent2_operator.main import main as operator_main
    except ImportError as exc:
        print(
            f"magent2 operator needs the operator extra: pip install 'magent2[operator]' ({exc})",
            file=sys.stderr,
        )
        return 2
    operator_main()
    return 0


def environment_help(settings: type[BaseSettings]) -> str:
    """The variables a settings class reads, with defaults, for `--help` (never out of date)."""
    lines = ["environment (defaults in brackets):"]
    for name, field in settings.model_fields.items():
        default: Any = field.get_default(call_default_factory=True)
        shown = "" if default is None or default == [] else f" [{default}]" if default != "" else ' [""]'
        lines.append(f"  {field.alias or name.upper()}{shown}")
    return "\n".join(lines)


def _process_parser(
    commands: Any, name: str, handler: Any, summary: str, description: str, settings: type[BaseSettings]
) -> None:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"{environment_help(settings)}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="magent2", description="A Kubernetes-native runtime for LLM agents."
    )
    parser.add_argument("--version", action="version", version=f"magent2 {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="gateway + one worker per Agent in one process (no cluster, no Redis)"
    )
    up.add_argument("-f", "--file", help="Agent manifests (YAML); default: the embedded DevAgent")
    up.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    up.add_argument("--redis-url", help="use this Redis instead of the in-memory bus")
    up.set_defaults(handler=_up)

    _process_parser(
        commands,
        "gateway",
        _gateway,
        "the HTTP/SSE gateway",
        "Serves POST /send, GET /stream/{id} (SSE), /agents, /health, /ready, /metrics and /docs. "
        "Needs REDIS_URL, the Redis the workers share (or GATEWAY_IN_MEMORY=true).",
        GatewaySettings,
    )
    _process_parser(
        commands,
        "worker",
        _worker,
        "a worker for AGENT_NAME's inbox",
        "Consumes the Redis stream chat:{AGENT_NAME} and runs each message through the Agents SDK "
        "(the echo runner without OPENAI_API_KEY / OPENAI_BASE_URL / AGENT_MODEL_FACTORY).",
        WorkerSettings,
    )
    from magent2_operator.settings import OperatorSettings

    _process_parser(
        commands,
        "operator",
        _operator,
        "the Kubernetes operator",
        "Reconciles Agent resources (magent2.dev/v1alpha1) into worker Deployments. Needs Kubernetes "
        "credentials: in-cluster service account or KUBECONFIG. Install with the operator extra.",
        OperatorSettings,
    )
    commands.add_parser("client", help="send a message or chat (see `magent2 client --help`)", add_help=False)
    tui = commands.add_parser(
        "tui",
        help="the terminal UI (needs the tui extra)",
        description="Chat with agents in tabs, watch their status, reopen conversations and see who "
        "talked to whom, over the gateway's HTTP API. F1 in the app lists the keys.",
    )
    tui.add_argument(
        "--base-url",
        default=os.environ.get("MAGENT2_BASE_URL", "http://localhost:8000"),
        help="gateway URL [MAGENT2_BASE_URL]",
    )
    tui.add_argument(
        "--agent",
        default=os.environ.get("MAGENT2_AGENT_NAME", "DevAgent"),
        help="agent of the first tab [MAGENT2_AGENT_NAME]",
    )
    tui.add_argument("--sender", default=f"user:{os.environ.get('USER', 'tui')}", help="sender (user:<name>)")
    tui.add_argument(
        "--token", default=os.environ.get("MAGENT2_API_TOKEN"), help="bearer token [MAGENT2_API_TOKEN]"
    )
    tui.add_argument("--conv", help="open this conversation (default: a new one)")
    tui.set_defaults(handler=_tui)
    dlq.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:  # the client owns its flags, exit codes included
        from magent2.client.cli import main as client_main

        return client_main(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        result: int = args.handler(args)
    except StartupError as exc:
        print(f"magent2 {args.command}: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
