"""`magent2 dlq`: list, show, replay and purge an agent's dead letters (`dlq:{agent}` in Redis)."""

from __future__ import annotations

import argparse
import json
import sys

from magent2.bus import START, Bus, BusUnavailable, Keys, RedisStreamsBus
from magent2.contracts import DeadLetter
from magent2.loop import run
from magent2.settings import BusSettings, load

PREVIEW = 60


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="inspect and replay dead letters (messages no worker could finish)",
        description="Messages delivered more than WORKER_MAX_DELIVERIES times, or malformed, are moved "
        "to the stream dlq:{agent}. Connects to REDIS_URL (with BUS_PREFIX).",
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("list", "one line per dead letter"),
        ("show", "the full entries, as JSON"),
        ("replay", "put messages back into the agent's inbox (they run again) and drop them here"),
        ("purge", "drop dead letters for good"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--agent", required=True, help="the agent's name (its agentName)")
        if name != "list":
            which = action.add_mutually_exclusive_group(required=True)
            which.add_argument("ids", nargs="*", default=[], metavar="ID", help="dead-letter ids (from list)")
            which.add_argument("--all", action="store_true", help="every dead letter of the agent")
    dlq.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    settings = load(BusSettings)
    if not settings.redis_url:
        print("magent2 dlq: REDIS_URL is not set (dead letters live in Redis)", file=sys.stderr)
        return 2
    bus = RedisStreamsBus(settings.redis_url, socket_timeout_s=settings.redis_socket_timeout_seconds)
    try:
        return run(_act(bus, Keys(settings.bus_prefix), args))
    except BusUnavailable as exc:
        print(f"magent2 dlq: {exc}", file=sys.stderr)
        return 1


async def _act(bus: Bus, keys: Keys, args: argparse.Namespace) -> int:
    stream = keys.dead_letters(args.agent)
    try:
        letters = await _letters(bus, stream)
        if args.action == "list":
            for entry_id, letter in letters.items():
                print(_line(entry_id, letter))
            print(f"{len(letters)} dead letter(s) in {stream}", file=sys.stderr)
            return 0
        chosen = list(letters) if args.all else args.ids
        unknown = [i for i in chosen if i not in letters]
        if unknown:
            print(f"magent2 dlq: not in {stream}: {', '.join(unknown)}", file=sys.stderr)
            return 1
        if args.action == "show":
            for entry_id in chosen:
                print(json.dumps({"id": entry_id, **letters[entry_id].model_dump(mode="json")}))
            return 0
        if args.action == "replay":
            return await _replay(bus, keys, stream, {i: letters[i] for i in chosen})
        removed = await bus.delete(stream, chosen)
        print(f"purged {removed} dead letter(s) from {stream}", file=sys.stderr)
        return 0
    finally:
        await bus.close()


async def _letters(bus: Bus, stream: str) -> dict[str, DeadLetter]:
    letters: dict[str, DeadLetter] = {}
    cursor = START
    while batch := await bus.read(stream, cursor, count=1000):
        letters.update((m.id, DeadLetter.model_validate_json(m.payload)) for m in batch)
        cursor = batch[-1].id
    return letters


async def _replay(bus: Bus, keys: Keys, stream: str, letters: dict[str, DeadLetter]) -> int:
    replayed: list[str] = []
    for entry_id, letter in letters.items():
        envelope = letter.envelope()
        if envelope is None:
            print(f"magent2 dlq: {entry_id} is not a valid message and cannot be replayed", file=sys.stderr)
            continue
        # Queued behind the conversation's unfinished messages, like a new arrival.
        await bus.publish(keys.inbox(letter.agent), envelope.to_json(), order_key=envelope.conversation_id)
        replayed.append(entry_id)
    await bus.delete(stream, replayed)
    print(f"replayed {len(replayed)} of {len(letters)} dead letter(s)", file=sys.stderr)
    return 0 if len(replayed) == len(letters) else 1


def _line(entry_id: str, letter: DeadLetter) -> str:
    envelope = letter.envelope()
    where = f"{envelope.conversation_id} {envelope.id}" if envelope else "(malformed)"
    text = envelope.content if envelope else letter.payload
    preview = text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"
    return f"{entry_id}  {letter.dead_at:%Y-%m-%d %H:%M:%S}  {where}  {letter.reason}  {json.dumps(preview)}"
