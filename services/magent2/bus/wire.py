"""A lean Redis client for the bus: commands from any number of tasks share one connection and
are written together once per event-loop pass (auto-pipelining); hiredis packs them and parses
the replies, which Redis sends back in order. Blocking reads get a connection of their own.

Why not redis-py here: it checks a connection out of its pool and writes each command with a
syscall of its own. From 16 tasks at once it costs ~40 us of client CPU and ~11 us of Redis CPU
per command on a 2-core machine, this ~4 and ~3.5; from one task both pay for a wake-up per
command (`python -m bench.wire`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url

Arg = str | bytes | int | float


class ReplyError(Exception):
    """Redis answered the command with an error (NOSCRIPT, BUSYGROUP, WRONGTYPE, ...)."""


class ConnectionFailed(ConnectionError):
    """No reply: the connection could not be made, broke, or a reply took longer than the
    timeout. `sent` is False only when the command certainly never reached Redis."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class Script:
    """A Lua script, run by its SHA1 and loaded by EVAL the first time Redis does not know it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


class _Link(asyncio.Protocol):
    """One TCP connection: a FIFO of futures waiting for replies, and the commands not yet
    written (flushed together at the end of the current event-loop pass)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, where: str) -> None:
        self.loop, self.timeout_s, self.where = loop, timeout_s, where
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (reply, deadline)
        self.unwritten: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: ConnectionFailed | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future, _ = self.waiting.popleft()
            if future.done():  # its caller was cancelled; the reply is dropped in order
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ReplyError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"connection to redis at {self.where} lost" + (f": {exc}" if exc else ""))

    # -- ours --
    def send(self, args: tuple[Arg, ...], extra_s: float = 0.0) -> asyncio.Future[Any]:
        """Queue one command; its reply (or error) resolves the returned future. `extra_s`:
        how much longer than the timeout the reply may take (a blocking read's own wait)."""
        if self.lost is not None:
            raise ConnectionFailed(str(self.lost), sent=False)
        future = self.loop.create_future()
        self.waiting.append((future, self.loop.time() + self.timeout_s + extra_s))
        if not self.unwritten:
            self.loop.call_soon(self._flush)
        self.unwritten.append(hiredis.pack_command(args))  # type: ignore[arg-type]
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self._watch_every(), self._watch)
        return future

    def _flush(self) -> None:
        if self.transport is None or self.lost is not None or not self.unwritten:
            return
        chunks, self.unwritten = self.unwritten, []
        self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _watch_every(self) -> float:
        return min(max(self.timeout_s / 4, 0.05), 1.0)

    def _watch(self) -> None:
        """One timer per connection rather than one per command: a reply overdue by more than
        its deadline (checked every quarter timeout, at most 1 s) breaks the connection, since
        the replies behind it could no longer be matched to their commands."""
        self._watchdog = None
        if not self.waiting:
            return
        if self.waiting[0][1] < self.loop.time():
            self.close(f"timeout: no reply from redis at {self.where} within {self.timeout_s:g}s")
            if self.transport is not None:
                self.transport.abort()
            return
        self._watchdog = self.loop.call_later(self._watch_every(), self._watch)

    def close(self, reason: str) -> None:
        """Fail every waiting command: those written may have run, the rest never reached Redis."""
        if self.lost is not None:
            return
        self.lost = ConnectionFailed(reason, sent=True)
        unsent = len(self.unwritten)
        self.unwritten = []
        failed = list(self.waiting)
        self.waiting.clear()
        for at, (future, _) in enumerate(failed):
            if not future.done():
                future.set_exception(ConnectionFailed(reason, sent=at < len(failed) - unsent))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.close()

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()


class Redis:
    """Connections made on demand from a redis-py style URL (redis://, rediss://, unix://;
    user, password and db as redis-py reads them). `call` shares one connection; `dedicated`
    lends one for a blocking command, at most `max_connections - 1` at a time (callers wait)."""

    def __init__(
        self, url: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 3.0, max_connections: int = 64
    ) -> None:
        options = parse_url(url)
        self.path: str | None = options.get("path")
        self.host: str = options.get("host", "localhost")
        self.port: int = int(options.get("port", 6379))
        self.ssl = _ssl_context(options) if options.get("connection_class") is SSLConnection else None
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.db = int(options.get("db", 0))
        self.where = self.path or f"{self.host}:{self.port}"
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._shared: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None
        self._idle: list[_Link] = []
        self._lent = asyncio.Semaphore(max(max_connections - 1, 1))
        self._closed = False

    async def call(self, *args: Arg) -> Any:
        """Run one command on the shared connection; its reply (str, int, list, None)."""
        link = self._shared
        if link is None or not link.usable:
            link = await self._shared_link()
        return await link.send(args)

    async def many(self, *commands: tuple[Arg, ...]) -> list[Any]:
        """Several commands written together on the shared connection, run in order (not
        atomically); each command's reply, or its `ReplyError` in its place."""
        link = self._shared
        if link is None or not link.usable:
            link = await self._shared_link()
        futures = [link.send(command) for command in commands]
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, ReplyError):
                raise reply
        return replies

    async def script(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted (or was flushed) since it last ran the script: EVAL loads it again.
        return await self.call("EVAL", script.source, len(keys), *keys, *args)

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[_Link]:
        """A connection of the caller's own while it waits in a blocking command."""
        async with self._lent:
            while self._idle and not self._idle[-1].usable:
                self._idle.pop()
            link = self._idle.pop() if self._idle else await self._connect()
            try:
                yield link
            finally:
                if link.usable and not link.waiting and not self._closed:
                    self._idle.append(link)
                else:
                    link.close("connection released while a reply was outstanding")

    async def blocking(self, timeout_ms: int, *args: Arg) -> Any:
        """A blocking command (XREAD BLOCK, XREADGROUP BLOCK) whose wait is `timeout_ms`."""
        async with self.dedicated() as link:
            return await link.send(args, extra_s=timeout_ms / 1000)

    async def _shared_link(self) -> _Link:
        # One connect in flight; everyone who calls meanwhile waits for the same one.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            link = await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None
        self._shared = link
        return link

    async def _connect(self) -> _Link:
        if self._closed:
            raise ConnectionFailed("the redis client is closed", sent=False)
        loop = asyncio.get_running_loop()
        link = _Link(loop, self.timeout_s, self.where)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.path:
                    await loop.create_unix_connection(lambda: link, self.path)
                else:
                    await loop.create_connection(lambda: link, self.host, self.port, ssl=self.ssl)
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"error connecting to redis at {self.where}: {exc}", sent=False) from exc
        handshake = []
        if self.password is not None:
            credentials = (self.username, self.password) if self.username else (self.password,)
            handshake.append(link.send(("AUTH", *credentials)))
        if self.db:
            handshake.append(link.send(("SELECT", self.db)))
        try:
            await asyncio.gather(*handshake)
        except ReplyError as exc:
            link.close("handshake failed")
            raise ConnectionFailed(
                f"redis at {self.where} refused the connection: {exc}", sent=False
            ) from exc
        except BaseException:
            link.close("handshake failed")
            raise
        return link

    async def close(self) -> None:
        self._closed = True
        for link in [self._shared, *self._idle]:
            if link is not None:
                link.close("client closed")
        self._shared, self._idle = None, []


def _ssl_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """rediss:// with redis-py's query options `ssl_cert_reqs` (none|optional|required) and
    `ssl_ca_certs` (a CA bundle file)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    required = str(options.get("ssl_cert_reqs", "required")).lower()
    if required == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif required == "optional":
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
