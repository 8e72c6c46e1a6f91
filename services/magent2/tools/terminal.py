"""The terminal tool: run one allowlisted command without a shell, bounded in time and output.

- argv comes from shlex: `;`, `&&`, `|`, `>` and backticks are plain arguments, never interpreted.
- Only commands whose basename is allowlisted run, resolved on a fixed PATH.
- The child runs in its own process group in a fixed working directory with a scrubbed environment
  (nothing of the worker's: no API keys, no REDIS_URL); at the timeout the whole group is killed.
- Output is capped in bytes while it is read; what reaches the model is capped in characters and
  redacted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magent2.tools.output import as_json
from magent2.tools.redaction import Redactor

if TYPE_CHECKING:
    from agents import FunctionTool

DEFAULT_ALLOWED = (
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "grep",
    "echo",
    "pwd",
    "date",
    "sort",
    "uniq",
)
# Never defaults: interpreters and shells (python3 -c, sh -c, node -e run anything) and commands
# that run others (find -exec, xargs, env, nice, timeout, git -c core.pager=…). Allowing one of
# them allows every command; see README "What the terminal allowlist protects".
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class TerminalPolicy:
    allowed_commands: frozenset[str] = frozenset(DEFAULT_ALLOWED)
    timeout_s: float = 5.0
    output_cap_bytes: int = 8192
    function_output_max_chars: int = 1000
    workdir: Path = field(default_factory=Path.cwd)
    redact: Redactor = field(default_factory=Redactor.build)


@dataclass
class TerminalResult:
    command: str
    exit_code: int | None = None
    output: str = ""
    truncated: bool = False  # output went past output_cap_bytes
    timed_out: bool = False
    denied: bool = False
    reason: str | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.denied and not self.timed_out and self.exit_code == 0

    def for_model(self, max_chars: int) -> dict[str, Any]:
        """The tool's return value: structured, with the output capped in characters."""
        result = asdict(self)
        if len(self.output) > max_chars:
            result["output"] = self.output[:max_chars]
            result["output_truncated_chars"] = len(self.output) - max_chars
        if not self.ok:
            result["error"] = self.reason or f"exit code {self.exit_code}"
        return result


def child_environment(workdir: Path) -> dict[str, str]:
    """Built from nothing, not filtered from the worker's: a secret cannot slip through."""
    return {"PATH": SAFE_PATH, "HOME": str(workdir), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "dumb"}


async def run_command(command: str, policy: TerminalPolicy) -> TerminalResult:
    result = TerminalResult(command=policy.redact(command))
    began = time.perf_counter()
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return _deny(result, f"cannot parse command: {exc}")
    if not argv:
        return _deny(result, "empty command")
    name = os.path.basename(argv[0])
    if name not in policy.allowed_commands:
        allowed = ", ".join(sorted(policy.allowed_commands)) or "none"
        return _deny(result, f"command {name!r} is not allowed (allowed: {allowed})")
    executable = shutil.which(name, path=SAFE_PATH)
    if executable is None:
        return _deny(result, f"command {name!r} is not installed")
    process = await asyncio.create_subprocess_exec(
        executable,
        *argv[1:],
        cwd=policy.workdir,
        env=child_environment(policy.workdir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the timeout kills children too
    )
    captured = bytearray()
    try:
        async with asyncio.timeout(policy.timeout_s):
            result.truncated = await _read_capped(process, captured, policy.output_cap_bytes)
            result.exit_code = await process.wait()
    except TimeoutError:
        result.timed_out = True
        result.reason = f"timed out after {policy.timeout_s:g}s; the command and its children were killed"
        _kill_group(process.pid)
        result.exit_code = await process.wait()
    finally:
        _kill_group(process.pid)  # children that outlived the command, or a cancelled run
    result.output = policy.redact(captured.decode("utf-8", errors="replace"))
    result.duration_ms = round((time.perf_counter() - began) * 1000, 3)
    return result


async def _read_capped(process: asyncio.subprocess.Process, into: bytearray, cap: int) -> bool:
    """Keep the first `cap` bytes; read and drop the rest so the child never blocks on a full pipe."""
    assert process.stdout is not None
    truncated = False
    while chunk := await process.stdout.read(READ_CHUNK):
        room = cap - len(into)
        if room > 0:
            into += chunk[:room]
        truncated = truncated or len(chunk) > room
    return truncated


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _deny(result: TerminalResult, reason: str) -> TerminalResult:
    result.denied, result.reason = True, reason
    return result


def terminal_tool(policy: TerminalPolicy) -> FunctionTool:
    """The Agents SDK function tool `terminal` bound to `policy`."""
    from agents import function_tool

    @function_tool(name_override="terminal")
    async def terminal(command: str) -> str:
        """Run one command (no shell: pipes, redirection and `;` are not interpreted) in the agent's
        working directory and return its exit code and output.

        Args:
            command: the command line, e.g. `ls -la` or `grep -n TODO notes.txt`.
        """
        result = await run_command(command, policy)
        return as_json(result.for_model(policy.function_output_max_chars))

    return terminal
