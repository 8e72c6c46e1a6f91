"""`magent2`: up | gateway | worker | operator | client | dlq."""

from __future__ import annotations

import argparse
import logging
import sys

from magent2 import __version__, dlq
from magent2.loop import run


def _up(args: argparse.Namespace) -> int:
    from magent2 import local
    from magent2.manifests import ManifestError, load_manifests

    try:
        manifests = load_manifests(args.file)
        run(local.serve(manifests, host=args.host, port=args.port, redis_url=args.redis_url))
    except ManifestError as exc:
        print(f"magent2 up: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _gateway(_: argparse.Namespace) -> int:
    from magent2.gateway.__main__ import main as gateway_main

    gateway_main()
    return 0


def _worker(_: argparse.Namespace) -> int:
    from magent2.worker.__main__ import main as worker_main

    worker_main()
    return 0


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

    commands.add_parser(
        "gateway", help="the HTTP/SSE gateway (configured by GATEWAY_* and REDIS_URL)"
    ).set_defaults(handler=_gateway)
    commands.add_parser("worker", help="a worker for AGENT_NAME's inbox (configured by env)").set_defaults(
        handler=_worker
    )
    commands.add_parser(
        "operator", help="the Kubernetes operator (configured by OPERATOR_* env)"
    ).set_defaults(handler=_operator)
    commands.add_parser("client", help="send a message or chat (see `magent2 client --help`)", add_help=False)
    dlq.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:  # the client owns its flags, exit codes included
        from magent2.client.cli import main as client_main

        return client_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
