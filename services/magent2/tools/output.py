"""How tool results reach the model: as JSON text. The SDK turns any other return value into
its Python repr (`{'exit_code': 0, 'truncated': False}`), which models read worse."""

from __future__ import annotations

import json
from typing import Any


def as_json(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, default=str)
