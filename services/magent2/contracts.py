"""Wire contracts shared by the gateway, the workers, the client and the operator (v1).

Only additive changes are allowed; docs/CONTRACTS.md describes them for non-Python clients.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

# Names that are safe inside Redis keys, Kubernetes labels and URLs.
AGENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SENDER_PATTERN = r"^(user|agent):[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
RECIPIENT_PATTERN = r"^agent:[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json()


class MessageEnvelope(_Wire):
    """One message into an agent's inbox."""

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    conversation_id: str = Field(pattern=CONVERSATION_ID_PATTERN)
    sender: str = Field(pattern=SENDER_PATTERN)
    recipient: str = Field(pattern=RECIPIENT_PATTERN)
    type: Literal["message", "control"] = "message"
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utc_now)

    @property
    def agent_name(self) -> str:
        return self.recipient.removeprefix("agent:")


class DeadLetter(_Wire):
    """An entry of `dlq:{agent}`: an inbox message that could not be run, and why."""

    message_id: str  # its id in the inbox stream
    agent: str
    reason: str
    payload: str  # the inbox entry as it was (normally a MessageEnvelope in JSON)
    dead_at: datetime = Field(default_factory=utc_now)

    def envelope(self) -> MessageEnvelope | None:
        try:
            return MessageEnvelope.model_validate_json(self.payload)
        except ValueError:
            return None


# --- stream events ---------------------------------------------------------------------------


class _Event(_Wire):
    id: str = Field(default_factory=new_id)
    conversation_id: str
    created_at: datetime = Field(default_factory=utc_now)


class UserMessageEvent(_Event):
    event: Literal["user_message"] = "user_message"
    message_id: str
    sender: str
    recipient: str
    content: str


class RunStartedEvent(_Event):
    event: Literal["run_started"] = "run_started"
    message_id: str
    agent: str


class TokenEvent(_Event):
    event: Literal["token"] = "token"
    text: str
    index: int


class ToolStepEvent(_Event):
    event: Literal["tool_step"] = "tool_step"
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    status: Literal["start", "success", "error"]
    result_summary: str | None = None
    error: str | None = None
    duration_ms: float | None = None
    tool_call_id: str | None = None


class OutputEvent(_Event):
    event: Literal["output"] = "output"
    text: str
    usage: dict[str, Any] = Field(default_factory=dict)
    message_id: str | None = None


class ErrorEvent(_Event):
    event: Literal["error"] = "error"
    message: str
    retryable: bool = False
    message_id: str | None = None


class CancelledEvent(_Event):
    """A run stopped on request (POST /conversations/{id}/cancel, or `onNewMessage: interrupt`)."""

    event: Literal["cancelled"] = "cancelled"
    message_id: str
    partial_text: str = ""
    reason: str = ""


class ApprovalRequiredEvent(_Event):
    """A tool call waits for a person's decision; the run holds no worker meanwhile."""

    event: Literal["approval_required"] = "approval_required"
    message_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)  # redacted
    expires_at: datetime


class ApprovalResolvedEvent(_Event):
    event: Literal["approval_resolved"] = "approval_resolved"
    message_id: str
    call_id: str
    decision: Literal["approve", "reject"]
    reason: str = ""
    by: Literal["user", "timeout"] = "user"


StreamEvent = Annotated[
    UserMessageEvent
    | RunStartedEvent
    | TokenEvent
    | ToolStepEvent
    | OutputEvent
    | ErrorEvent
    | CancelledEvent
    | ApprovalRequiredEvent
    | ApprovalResolvedEvent,
    Field(discriminator="event"),
]
stream_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)

# The outcome of a message: exactly one of these per message, published with its completion.
FINAL_EVENTS = frozenset({"output", "error", "cancelled"})
FinalEvent = OutputEvent | ErrorEvent | CancelledEvent


# --- run control -------------------------------------------------------------------------------

# What a message sent while its conversation's previous one still runs does: wait its turn
# (enqueue), is refused with 409 (reject), or stops the running one and runs next (interrupt).
OnNewMessage = Literal["enqueue", "reject", "interrupt"]


class ControlCommand(_Wire):
    """An entry of `control:{agent}`, read by every worker of the agent."""

    command: Literal["cancel"]
    conversation_id: str = Field(pattern=CONVERSATION_ID_PATTERN)
    reason: str = ""
    until_id: str | None = None  # only a run of an inbox entry older than this one
    created_at: datetime = Field(default_factory=utc_now)


Decision = Literal["approve", "reject"]


class ApprovalCall(_Wire):
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)  # redacted


class DecisionRecord(_Wire):
    decision: Decision
    reason: str = ""
    by: Literal["user", "timeout"] = "user"


class PendingApproval(_Wire):
    """`approval:{conversation_id}`: a run paused for approval, with everything to resume it on
    any worker once every call is decided (the decision script enqueues `resume` then)."""

    agent: str
    conversation_id: str
    message_id: str  # the envelope's id; the resumed run's events carry it too
    inbox_id: str  # the parked inbox entry, which still holds the conversation's turn
    calls: list[ApprovalCall]
    state: str  # the SDK's serialized RunState
    expires_at: datetime
    on_timeout: Decision = "reject"
    decisions: dict[str, DecisionRecord] = Field(default_factory=dict)
    resume: str  # the inbox entry (a MessageEnvelope of type `control`) that continues the run
    resumed: str | None = None  # its inbox id, once enqueued


# --- orchestration ---------------------------------------------------------------------------

SIGNAL_TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class Signal(_Wire):
    """An entry of `signal:{topic}` (signal_send, or a fan-out child's `done` signal)."""

    topic: str
    sender: str
    payload: str
    created_at: datetime = Field(default_factory=utc_now)


ChildStatus = Literal["done", "error", "cancelled"]


class ChildOutcome(_Wire):
    """The payload of a fan-out child's done signal, published with its run's final event."""

    conversation_id: str
    message_id: str
    status: ChildStatus
    output: str


class AgentCard(_Wire):
    """What workers tell the gateway about their agent (`agent:{name}`, written at start)."""

    on_new_message: OnNewMessage = "enqueue"


def parse_event(data: str | bytes) -> StreamEvent:
    return stream_event_adapter.validate_json(data)


# --- the Agent resource (spec shared with the operator and local mode) -------------------------

# Built-in tool groups and the function tools each brings. `tools:` / AGENT_TOOLS take group
# names, single tool names, or MCP server names (each server is a group of its own tools).
BUILTIN_TOOLS: dict[str, tuple[str, ...]] = {
    "terminal": ("terminal",),
    "todo": ("todo_create", "todo_get", "todo_list", "todo_update", "todo_delete"),
    "chat": ("chat_send",),
    "signals": ("signal_send", "signal_wait"),
    "fanout": ("fan_out", "fan_in"),
}


def unknown_tools(requested: list[str], mcp_servers: list[str]) -> list[str]:
    known = {*BUILTIN_TOOLS, *(t for tools in BUILTIN_TOOLS.values() for t in tools), *mcp_servers}
    return [name for name in requested if name not in known]


def describe_tools(mcp_servers: list[str]) -> str:
    groups = [f"{group} ({', '.join(tools)})" for group, tools in BUILTIN_TOOLS.items()]
    return "; ".join(groups + [f"{name} (MCP server)" for name in mcp_servers])


class _Spec(BaseModel):
    """camelCase on the wire (YAML / CRD), snake_case in Python."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=None)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _CamelSpec(_Spec):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=_camel)


class KeyRef(_CamelSpec):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class SecretKeyRef(KeyRef):
    """`optional: true`: a missing Secret leaves the variable unset instead of blocking the pod."""

    optional: bool = False


class InstructionsFrom(_CamelSpec):
    config_map_key_ref: KeyRef | None = None
    secret_key_ref: KeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InstructionsFrom:
        if (self.config_map_key_ref is None) == (self.secret_key_ref is None):
            raise ValueError("instructionsFrom needs exactly one of configMapKeyRef or secretKeyRef")
        return self


class TerminalPolicy(_CamelSpec):
    allowed_commands: list[str] | None = None
    timeout_seconds: float = Field(default=5, gt=0, le=600)
    output_cap_bytes: int = Field(default=8192, ge=256, le=10 * 1024 * 1024)
    function_output_max_chars: int = Field(default=1000, ge=100, le=1_000_000)
    redact_substrings: list[str] = Field(default_factory=list)
    redact_patterns: list[str] = Field(default_factory=list)


class EnvVar(_CamelSpec):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str | None = None
    value_from: dict[str, Any] | None = None


class McpServer(_CamelSpec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    allow_tools: list[str] | None = None
    block_tools: list[str] = Field(default_factory=list)
    startup_timeout_seconds: float = Field(default=10, gt=0, le=300)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"mcpServers[{self.name}] needs exactly one of command (stdio) or url (http)")
        return self


class ApprovalSpec(_CamelSpec):
    """Tool calls a person must approve: tool names as the model sees them (`terminal`,
    `todo_add`, ...) or `mcp:<server>/<tool>`."""

    tools: list[str] = Field(default_factory=list)
    timeout_seconds: int = Field(default=300, ge=1, le=7 * 86_400)
    on_timeout: Literal["approve", "reject"] = "reject"


class ModelSettingsSpec(_CamelSpec):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_turns: int = Field(default=10, ge=1, le=100)


# Which OpenAI API the model is called through: Responses (OpenAI's own), or Chat Completions
# (what most OpenAI-compatible servers speak). Unset: Responses, unless a base URL is set.
OpenAIApi = Literal["responses", "chat_completions"]
OpenAIHttpClient = Literal["aiohttp", "httpx"]  # worker setting OPENAI_HTTP_CLIENT


class OpenAISpec(_CamelSpec):
    api_key_secret_ref: SecretKeyRef | None = None
    base_url: str = Field(default="", alias="baseURL")
    api: OpenAIApi | None = None


LITELLM_PREFIX = "litellm/"  # spec.model "litellm/<provider>/<model>": any provider LiteLLM speaks


class ProviderSpec(_CamelSpec):
    """The key (and optionally the endpoint) of a `litellm/<provider>/<model>` model."""

    api_key_secret_ref: SecretKeyRef | None = None
    base_url: str = Field(default="", alias="baseURL")


class AutoscalingSpec(_CamelSpec):
    """Scale the workers on the inbox's backlog with KEDA (its redis-streams scaler): the operator
    stops owning `replicas` and creates a ScaledObject. 0 replicas while idle is allowed."""

    min_replicas: int = Field(default=0, ge=0, le=100)
    max_replicas: int = Field(default=10, ge=1, le=100)
    target_backlog_per_replica: int = Field(default=20, ge=1, le=100_000)

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("maxReplicas must be at least minReplicas")
        return self


class AgentSpec(_CamelSpec):
    """`spec` of an Agent resource; local mode validates the same YAML with this model."""

    agent_name: str | None = Field(default=None, pattern=AGENT_NAME_PATTERN)
    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=128)
    instructions: str | None = None
    instructions_from: InstructionsFrom | None = None
    tools: list[str] | None = None
    terminal: TerminalPolicy = Field(default_factory=TerminalPolicy)
    mcp_servers: list[McpServer] = Field(default_factory=list)
    model_settings: ModelSettingsSpec = Field(default_factory=ModelSettingsSpec)
    openai: OpenAISpec = Field(default_factory=OpenAISpec)
    provider: ProviderSpec | None = None
    replicas: int = Field(default=1, ge=0, le=100)
    autoscaling: AutoscalingSpec | None = None
    concurrency: int = Field(default=128, ge=1, le=256)
    image: str | None = None
    resources: dict[str, Any] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    service_account_name: str | None = None
    paused: bool = False
    on_new_message: OnNewMessage = "enqueue"
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)

    @model_validator(mode="after")
    def _instructions_once(self) -> AgentSpec:
        if self.instructions is not None and self.instructions_from is not None:
            raise ValueError("set either instructions or instructionsFrom, not both")
        if self.provider is not None and not self.model.startswith(LITELLM_PREFIX):
            raise ValueError(
                f"provider is for {LITELLM_PREFIX}<provider>/<model> models; use openai for {self.model!r}"
            )
        return self


class ObjectMeta(_Spec):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    namespace: str | None = None


class AgentManifest(_Spec):
    api_version: Literal["magent2.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Agent"]
    metadata: ObjectMeta
    spec: AgentSpec = Field(default_factory=AgentSpec)

    @property
    def agent_name(self) -> str:
        """Bus identity: spec.agentName, defaulting to metadata.name."""
        return self.spec.agent_name or self.metadata.name

    @field_validator("spec", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value
