"""Secret redaction for anything a tool hands back to the model or publishes in events."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

REDACTED = "[REDACTED]"

# A named group `keep` survives the redaction (the label stays, the secret goes).
BUILTIN_PATTERNS = (
    r"sk-[A-Za-z0-9_-]{16,}",  # OpenAI-style API keys
    r"(?i)(?P<keep>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)\b\s*[:=]\s*)[^\s,;]+",
    r"(?i)(?P<keep>\bauthorization:\s*bearer\s+)\S+",
    r"(?i)(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)",  # passwords in URLs
)


@dataclass(frozen=True)
class Redactor:
    patterns: tuple[re.Pattern[str], ...]
    substrings: tuple[str, ...] = ()

    @classmethod
    def build(cls, substrings: Iterable[str] = (), patterns: Iterable[str] = ()) -> Redactor:
        compiled = tuple(re.compile(p) for p in (*BUILTIN_PATTERNS, *patterns))
        return cls(compiled, tuple(s for s in substrings if s))

    def __call__(self, text: str) -> str:
        for secret in self.substrings:
            text = text.replace(secret, REDACTED)
        for pattern in self.patterns:
            text = pattern.sub(_replacement, text)
        return text


def _replacement(match: re.Match[str]) -> str:
    keep = match.group("keep") if "keep" in match.re.groupindex else ""
    return f"{keep}{REDACTED}"
