"""A real local gateway for the TUI tests: `magent2 up` with two agents on the scripted model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import DEV_AND_OPERATOR, local_mode


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    manifest = tmp_path_factory.mktemp("tui") / "agents.yaml"
    manifest.write_text(DEV_AND_OPERATOR)
    with local_mode(manifest) as url:
        yield url
