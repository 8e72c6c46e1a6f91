"""Environment configuration, validated at start-up (names fixed in DESIGN.md)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from magent2.contracts import (
    AGENT_NAME_PATTERN,
    Decision,
    McpServer,
    OnNewMessage,
    OpenAIApi,
    OpenAIHttpClient,
    describe_tools,
    unknown_tools,
)

_SENSITIVE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|URL", re.IGNORECASE)


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# "a, b,c" or a JSON array in the environment -> ["a", "b", "c"]; "" -> [] (unset stays None)
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


def default_session_path() -> str:
    """Conversation history without Redis: under the user's state directory, not the working one."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return str(state / "magent2" / "sessions.db")


class _Env(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, env_ignore_empty=False)


class BusSettings(_Env):
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    bus_prefix: str = Field(default="", alias="BUS_PREFIX", pattern=r"^[A-Za-z0-9:._-]*$")
    events_ttl_seconds: int = Field(default=7 * 86_400, alias="EVENTS_TTL_SECONDS", ge=60)
    stream_maxlen: int = Field(default=100_000, alias="STREAM_MAXLEN", ge=100)
    # The observer's index keeps this many most recent conversations (each for EVENTS_TTL_SECONDS).
    observer_max_conversations: int = Field(default=10_000, alias="OBSERVER_MAX_CONVERSATIONS", ge=10)
    # Every Redis reply must arrive within this; blocking reads are kept a second shorter.
    redis_socket_timeout_seconds: float = Field(
        default=10, alias="REDIS_SOCKET_TIMEOUT_SECONDS", ge=2, le=300
    )
    redis_max_connections: int = Field(default=64, alias="REDIS_MAX_CONNECTIONS", ge=4, le=10_000)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None


class WorkerSettings(BusSettings):
    agent_name: str = Field(default="DevAgent", alias="AGENT_NAME", pattern=AGENT_NAME_PATTERN)
    agent_model: str = Field(default="gpt-4o-mini", alias="AGENT_MODEL", min_length=1)
    agent_instructions: str = Field(default="You are a helpful assistant.", alias="AGENT_INSTRUCTIONS")
    agent_instructions_file: Path | None = Field(default=None, alias="AGENT_INSTRUCTIONS_FILE")
    agent_tools: CsvList | None = Field(default=None, alias="AGENT_TOOLS")
    agent_require_explicit_tools: bool = Field(default=False, alias="AGENT_REQUIRE_EXPLICIT_TOOLS")
    agent_session_path: str = Field(default_factory=default_session_path, alias="AGENT_SESSION_PATH")
    agent_max_turns: int = Field(default=10, alias="AGENT_MAX_TURNS", ge=1, le=100)
    agent_temperature: float | None = Field(default=None, alias="AGENT_TEMPERATURE", ge=0, le=2)
    agent_concurrency: int = Field(default=128, alias="AGENT_CONCURRENCY", ge=1, le=256)
    agent_on_new_message: OnNewMessage = Field(default="enqueue", alias="AGENT_ON_NEW_MESSAGE")
    # tool calls a person approves first: tool names, or mcp:<server>/<tool>
    agent_approval_tools: CsvList = Field(default_factory=list, alias="AGENT_APPROVAL_TOOLS")
    agent_approval_timeout_seconds: int = Field(
        default=300, alias="AGENT_APPROVAL_TIMEOUT_SECONDS", ge=1, le=7 * 86_400
    )
    agent_approval_on_timeout: Decision = Field(default="reject", alias="AGENT_APPROVAL_ON_TIMEOUT")
    agent_model_factory: str | None = Field(
        default=None, alias="AGENT_MODEL_FACTORY", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
    )
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    # unset: Responses for OpenAI, Chat Completions when OPENAI_BASE_URL points elsewhere
    openai_api: OpenAIApi | None = Field(default=None, alias="OPENAI_API")
    # the HTTP client under the OpenAI client: aiohttp costs less CPU per streamed delta
    openai_http_client: OpenAIHttpClient = Field(default="aiohttp", alias="OPENAI_HTTP_CLIENT")
    # The Agents SDK uploads traces (prompts, tool calls) to OpenAI unless told not to: opt in.
    openai_tracing: bool = Field(default=False, alias="OPENAI_TRACING")
    # for AGENT_MODEL=litellm/<provider>/<model> (spec.provider)
    litellm_api_key: SecretStr | None = Field(default=None, alias="LITELLM_API_KEY")
    litellm_base_url: str | None = Field(default=None, alias="LITELLM_BASE_URL")
    visibility_timeout_seconds: float = Field(default=30, alias="WORKER_VISIBILITY_TIMEOUT_SECONDS", gt=0)
    shutdown_grace_seconds: float = Field(default=20, alias="WORKER_SHUTDOWN_GRACE_SECONDS", ge=0)
    max_attempts: int = Field(default=3, alias="WORKER_MAX_ATTEMPTS", ge=1, le=20)
    max_deliveries: int = Field(default=5, alias="WORKER_MAX_DELIVERIES", ge=1, le=1000)
    health_port: int | None = Field(default=None, alias="WORKER_HEALTH_PORT", ge=1, le=65535)
    echo_token_delay_seconds: float = Field(default=0.0, alias="ECHO_TOKEN_DELAY_SECONDS", ge=0, le=60)
    max_input_chars: int = Field(default=32_000, alias="AGENT_MAX_INPUT_CHARS", ge=1)
    # tools
    terminal_allowed_commands: CsvList | None = Field(default=None, alias="TERMINAL_ALLOWED_COMMANDS")
    terminal_timeout_seconds: float = Field(default=5, alias="TERMINAL_TIMEOUT_SECONDS", gt=0, le=600)
    terminal_output_cap_bytes: int = Field(default=8192, alias="TERMINAL_OUTPUT_CAP_BYTES", ge=256)
    terminal_function_output_max_chars: int = Field(
        default=1000, alias="TERMINAL_FUNCTION_OUTPUT_MAX_CHARS", ge=100
    )
    terminal_redact_substrings: CsvList = Field(default_factory=list, alias="TERMINAL_REDACT_SUBSTRINGS")
    terminal_redact_patterns: CsvList = Field(default_factory=list, alias="TERMINAL_REDACT_PATTERNS")
    terminal_workdir: Path = Field(default_factory=Path.cwd, alias="TERMINAL_WORKDIR")
    todo_store_prefix: str = Field(default="todo", alias="TODO_STORE_PREFIX", pattern=r"^[A-Za-z0-9:._-]+$")
    chat_max_hops: int = Field(default=4, alias="CHAT_MAX_HOPS", ge=1, le=50)
    # signal_send may only use topics starting with this; payloads up to this size
    signal_topic_prefix: str = Field(default="", alias="SIGNAL_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9._:/-]*$")
    signal_payload_max_bytes: int = Field(default=64 * 1024, alias="SIGNAL_PAYLOAD_MAX_BYTES", ge=1)
    fanout_max_children: int = Field(default=10, alias="FANOUT_MAX_CHILDREN", ge=1, le=100)
    mcp_servers: Annotated[list[McpServer], NoDecode] = Field(default_factory=list, alias="AGENT_MCP_SERVERS")

    @model_validator(mode="after")
    def _known_tools(self) -> WorkerSettings:
        servers = [server.name for server in self.mcp_servers]
        if self.agent_tools and (unknown := unknown_tools(self.agent_tools, servers)):
            raise ValueError(
                f"AGENT_TOOLS: unknown tools {', '.join(unknown)}; known: {describe_tools(servers)}"
            )
        return self

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _mcp_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("terminal_redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

    @field_validator("terminal_workdir")
    @classmethod
    def _directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"not a directory: {value}")
        return value.resolve()

    @field_validator("agent_instructions_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @property
    def model_api(self) -> OpenAIApi:
        return self.openai_api or ("chat_completions" if self.openai_base_url else "responses")

    @field_validator(
        "openai_api_key",
        "openai_base_url",
        "openai_api",
        "litellm_api_key",
        "litellm_base_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def instructions(self) -> str:
        if self.agent_instructions_file is not None:
            return self.agent_instructions_file.read_text(encoding="utf-8")
        return self.agent_instructions


class GatewaySettings(BusSettings):
    host: str = Field(default="0.0.0.0", alias="GATEWAY_HOST")
    port: int = Field(default=8000, alias="GATEWAY_PORT", ge=1, le=65535)
    api_tokens: CsvList = Field(default_factory=list, alias="GATEWAY_API_TOKENS")
    max_content_bytes: int = Field(default=64 * 1024, alias="GATEWAY_MAX_CONTENT_BYTES", ge=1)
    heartbeat_seconds: float = Field(default=15, alias="GATEWAY_HEARTBEAT_SECONDS", gt=0)
    log_level: str = Field(default="info", alias="GATEWAY_LOG_LEVEL")
    # An SSE event larger than this has its longest text fields shortened (valid JSON, marked).
    sse_max_event_bytes: int = Field(default=256 * 1024, alias="SSE_MAX_EVENT_BYTES", ge=1024)
    # POST /send to an agent without an inbox (no worker ever started) is a 404, not a silent wait.
    check_recipients: bool = Field(default=True, alias="GATEWAY_CHECK_RECIPIENTS")
    # Without REDIS_URL the gateway refuses to start unless this says an in-memory bus is meant.
    in_memory: bool = Field(default=False, alias="GATEWAY_IN_MEMORY")
    # SSE fan-out: reader tasks multiplexing one XREAD each, and the events buffered per client
    # before a slow client falls back to reading from its own cursor.
    # (Each reader re-sends the keys of its shard per read: 10,000 streams over 32 readers keep
    # a round trip within 1.25x of idle; over 2 readers it took 8x.)
    stream_readers: int = Field(default=32, alias="GATEWAY_STREAM_READERS", ge=1, le=256)
    stream_buffer_events: int = Field(default=2000, alias="GATEWAY_STREAM_BUFFER_EVENTS", ge=10)
    # Answer 202 only once Redis has fsynced the message to its AOF (WAITAOF, Redis >= 7.2).
    durable_ack: bool = Field(default=False, alias="GATEWAY_DURABLE_ACK")
    durable_ack_timeout_ms: int = Field(default=1000, alias="GATEWAY_DURABLE_ACK_TIMEOUT_MS", ge=1)

    @model_validator(mode="after")
    def _pool_fits_the_readers(self) -> GatewaySettings:
        if self.redis_url and self.redis_max_connections < self.stream_readers + 8:
            raise ValueError(
                f"REDIS_MAX_CONNECTIONS ({self.redis_max_connections}) must exceed GATEWAY_STREAM_READERS "
                f"({self.stream_readers}) by at least 8: each reader holds a connection"
            )
        return self


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigError(SystemExit):
    """Exit status 2 with a message that names each offending variable."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def describe_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "settings"
        shown = "<hidden>" if _SENSITIVE.search(name) else repr(item.get("input"))
        lines.append(f"  {name}: {item['msg']} (got {shown})")
    return "invalid configuration:\n" + "\n".join(lines)


def load(settings_type: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings from the environment, or exit 2 naming the bad variables."""
    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        print(describe_errors(exc), file=sys.stderr)
        raise ConfigError(describe_errors(exc)) from None
