"""Input guardrails for the Agents SDK agent."""

from __future__ import annotations

from typing import Any


def max_input_guardrail(max_chars: int) -> Any:
    """Trip when the user's input is longer than `max_chars`; the run ends with an error event."""
    from agents import Agent, GuardrailFunctionOutput, RunContextWrapper, input_guardrail

    @input_guardrail(name="max_input_chars")
    async def max_input_chars(
        ctx: RunContextWrapper[Any], agent: Agent[Any], data: Any
    ) -> GuardrailFunctionOutput:
        # The message being answered (the run's input may also hold the session's history).
        content = getattr(ctx.context, "content", data)
        size = len(content) if isinstance(content, str) else len(str(content))
        return GuardrailFunctionOutput(
            output_info={"chars": size, "limit": max_chars}, tripwire_triggered=size > max_chars
        )

    return max_input_chars
