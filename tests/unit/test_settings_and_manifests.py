from __future__ import annotations

from pathlib import Path

import pytest

from magent2.contracts import AgentManifest
from magent2.local import worker_settings
from magent2.manifests import ManifestError, load_manifests, parse_manifests
from magent2.settings import ConfigError, GatewaySettings, WorkerSettings, load


def test_worker_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_NAME", "Ops")
    monkeypatch.setenv("AGENT_TOOLS", "terminal, todo,,")
    monkeypatch.setenv("AGENT_REQUIRE_EXPLICIT_TOOLS", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    settings = load(WorkerSettings)
    assert settings.agent_name == "Ops"
    assert settings.agent_tools == ["terminal", "todo"]
    assert settings.agent_require_explicit_tools is True
    assert settings.openai_base_url is None
    assert "sk-abc" not in repr(settings)


def test_instructions_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "i.txt"
    path.write_text("from file")
    monkeypatch.setenv("AGENT_INSTRUCTIONS_FILE", str(path))
    assert load(WorkerSettings).instructions == "from file"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENT_CONCURRENCY", "0"),
        ("GATEWAY_PORT", "http"),
        ("REDIS_URL", "localhost:6379"),
        ("BUS_PREFIX", "a b"),
    ],
)
def test_bad_values_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load(GatewaySettings if name == "GATEWAY_PORT" else WorkerSettings)
    assert raised.value.code == 2
    assert name in capsys.readouterr().err


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", "http://user:hunter2@host")
    with pytest.raises(ConfigError):
        load(WorkerSettings)
    assert "hunter2" not in capsys.readouterr().err


def test_default_manifest_is_devagent() -> None:
    [manifest] = load_manifests(None)
    assert manifest.agent_name == "DevAgent"


def test_examples_validate(repo_root: Path) -> None:
    manifests = load_manifests(repo_root / "examples" / "agents.yaml")
    assert [m.agent_name for m in manifests] == ["DevAgent", "Reviewer"]
    assert manifests[0].spec.terminal.allowed_commands == ["ls", "cat", "echo", "grep"]
    [operator] = load_manifests(repo_root / "examples" / "run-control.yaml")
    assert operator.spec.approval.tools == ["terminal"] and operator.spec.on_new_message == "interrupt"
    lead, researcher = load_manifests(repo_root / "examples" / "orchestration.yaml")
    assert lead.spec.tools == ["fanout", "signals", "chat"] and researcher.spec.replicas == 2


def test_agent_name_defaults_to_metadata_name() -> None:
    [m] = parse_manifests("apiVersion: magent2.dev/v1alpha1\nkind: Agent\nmetadata: {name: helper}\n")
    assert m.agent_name == "helper"


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("kind: Agent\napiVersion: magent2.dev/v1alpha1\nmetadata: {name: Bad_Name}\n", "metadata.name"),
        ("kind: Agent\napiVersion: magent2.dev/v1\nmetadata: {name: a}\n", "apiVersion"),
        (
            "kind: Agent\napiVersion: magent2.dev/v1alpha1\nmetadata: {name: a}\nspec: {modle: x}\n",
            "spec.modle",
        ),
        (
            "kind: Agent\napiVersion: magent2.dev/v1alpha1\nmetadata: {name: a}\n"
            "spec: {instructions: x, instructionsFrom: {configMapKeyRef: {name: c, key: k}}}\n",
            "not both",
        ),
        (
            "kind: Agent\napiVersion: magent2.dev/v1alpha1\nmetadata: {name: a}\n"
            "spec: {mcpServers: [{name: t}]}\n",
            "exactly one of command",
        ),
        ("a: [\n", "not valid YAML"),
        ("kind: ConfigMap\n", "no Agent resources"),
        (
            "kind: Agent\napiVersion: magent2.dev/v1alpha1\nmetadata: {name: a}\nspec: {agentName: X}\n---\n"
            "kind: Agent\napiVersion: magent2.dev/v1alpha1\nmetadata: {name: b}\nspec: {agentName: X}\n",
            "more than one Agent: X",
        ),
    ],
)
def test_manifest_errors_name_what_is_wrong(yaml_text: str, needle: str) -> None:
    with pytest.raises(ManifestError, match=needle.replace("(", r"\(")):
        parse_manifests(yaml_text, "test.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifests(tmp_path / "nope.yaml")


def test_local_worker_settings_follow_the_spec() -> None:
    manifest = AgentManifest.model_validate(
        {
            "apiVersion": "magent2.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "a"},
            "spec": {
                "agentName": "Alpha",
                "model": "m1",
                "instructions": "be kind",
                "concurrency": 3,
                "modelSettings": {"maxTurns": 4, "temperature": 0.5},
            },
        }
    )
    settings = worker_settings(manifest, WorkerSettings())
    assert (settings.agent_name, settings.agent_model, settings.instructions) == ("Alpha", "m1", "be kind")
    assert (settings.agent_concurrency, settings.agent_max_turns, settings.agent_temperature) == (3, 4, 0.5)


def test_local_mode_refuses_cluster_references() -> None:
    manifest = AgentManifest.model_validate(
        {
            "apiVersion": "magent2.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "a"},
            "spec": {"instructionsFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        }
    )
    with pytest.raises(ManifestError, match="instructionsFrom"):
        worker_settings(manifest, WorkerSettings())


def test_the_redis_pool_must_leave_room_beside_the_stream_readers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("GATEWAY_STREAM_READERS", "60")
    with pytest.raises(ConfigError):
        load(GatewaySettings)
    assert "REDIS_MAX_CONNECTIONS (64) must exceed GATEWAY_STREAM_READERS (60)" in capsys.readouterr().err
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "100")
    assert load(GatewaySettings).stream_readers == 60


def test_sessions_are_kept_out_of_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert load(WorkerSettings).agent_session_path == str(tmp_path / "magent2" / "sessions.db")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert load(WorkerSettings).agent_session_path.startswith(str(Path.home()))


def test_make_run_installs_the_runtime_only(repo_root: Path) -> None:
    """`make run` needs neither the test tools nor the operator extra (a 456 MB venv)."""
    makefile = (repo_root / "Makefile").read_text()
    assert "\nrun: $(VENV)/.runtime " in makefile
    runtime = makefile.split("$(VENV)/.runtime: pyproject.toml")[1].split("\n\n")[0]
    assert "pip install -q -e .\n" in runtime and "[dev" not in runtime


def test_routine_http_requests_are_logged_only_at_debug() -> None:
    import logging

    from magent2.startup import configure_logging

    configure_logging("info")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("openai").getEffectiveLevel() == logging.WARNING
    configure_logging("debug")
    assert logging.getLogger("httpx").level == logging.NOTSET  # follows the root: debug


def test_the_openai_api_is_a_setting_with_a_default_per_base_url() -> None:
    from magent2.settings import WorkerSettings
    from magent2.worker.sdk_runner import build_model

    assert WorkerSettings().model_api == "responses"
    assert WorkerSettings(OPENAI_BASE_URL="http://127.0.0.1:9/v1").model_api == "chat_completions"
    explicit = WorkerSettings(OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API="responses")
    assert explicit.model_api == "responses"
    chat = build_model("m", api_key="k", base_url=None, api="chat_completions")
    responses = build_model("m", api_key="k", base_url="http://127.0.0.1:9/v1", api="responses")
    assert (type(chat).__name__, type(responses).__name__) == (
        "OpenAIChatCompletionsModel",
        "OpenAIResponsesModel",
    )


async def test_the_model_http_client_is_aiohttp_by_default_and_honours_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from magent2.settings import WorkerSettings
    from magent2.worker.sdk_runner import http_client

    assert WorkerSettings().openai_http_client == "aiohttp"
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    aiohttp, httpx_client = http_client("aiohttp"), http_client("httpx")
    proxies = [str(getattr(t, "proxy", "")) for t in aiohttp._mounts.values()]
    assert type(aiohttp).__name__ == "_InstalledAioHttpClient" and "127.0.0.1:3128" in " ".join(proxies)
    assert type(httpx_client).__name__ == "_DefaultAsyncHttpxClient"
    await aiohttp.aclose()
    await httpx_client.aclose()


def test_a_bad_openai_api_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from magent2.settings import ConfigError, WorkerSettings, load

    monkeypatch.setenv("OPENAI_API", "completions")
    with pytest.raises(ConfigError):
        load(WorkerSettings)
    assert "OPENAI_API" in capsys.readouterr().err


def test_spec_openai_api_reaches_the_worker(repo_root: Path) -> None:
    from magent2.local import worker_settings
    from magent2.settings import WorkerSettings
    from magent2_operator.builders import worker_config

    [manifest] = parse_manifests(
        "apiVersion: magent2.dev/v1alpha1\nkind: Agent\nmetadata: {name: x}\n"
        "spec: {openai: {baseURL: 'http://llm:8000/v1', api: responses}}\n"
    )
    assert worker_settings(manifest, WorkerSettings()).model_api == "responses"
    assert worker_config("x", manifest.spec)["OPENAI_API"] == "responses"
