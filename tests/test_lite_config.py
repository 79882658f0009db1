"""Config: defaults, YAML, CODA_* overrides, and errors that name the bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda_lite.config import Config, ConfigError, load_config


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    config = load_config(env={"CODA_HOME": str(tmp_path)})
    assert config.home == tmp_path
    assert config.llm.backend == "auto"
    assert config.tts.backend == "espeak-ng"
    assert config.server.host == "127.0.0.1" and config.server.port == 8765
    assert config.telemetry.capture_content is False
    assert config.telemetry.pipeline_log_max_bytes == 50 * 2**20
    assert config.memory_db_path == tmp_path / "data" / "memory.sqlite3"
    config.ensure_dirs()
    for sub in ("data", "pipeline_logs", "snapshots", "traces"):
        assert (tmp_path / sub).is_dir()


def test_yaml_then_env_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "coda.yaml"
    cfg.write_text(
        "llm:\n  backend: ollama\n  model: llama3.2\n  timeout: 5\n"
        "server:\n  port: 9000\n  allowed_origins: [http://localhost:3000]\n"
        "telemetry:\n  snapshot_interval: 3\n"
    )
    env = {
        "CODA_CONFIG": str(cfg),
        "CODA_LLM_URL": "http://127.0.0.1:1234",
        "CODA_PORT": "9100",
        "CODA_CAPTURE_CONTENT": "true",
        "CODA_DEBUG_TOKEN": "s3cret",
        "CODA_TTS_BACKEND": "none",
        "CODA_HOME": str(tmp_path / "home"),
        "CODA_SERVER_ALLOWED_ORIGINS": "http://a.test, http://b.test",
    }
    config = load_config(env=env)
    assert config.llm.backend == "ollama" and config.llm.model == "llama3.2"
    assert config.llm.timeout == 5.0
    assert config.llm.url == "http://127.0.0.1:1234"
    assert config.server.port == 9100
    assert config.server.allowed_origins == ["http://a.test", "http://b.test"]
    assert config.telemetry.capture_content is True
    assert config.telemetry.snapshot_interval == 3
    assert config.server.debug_token == "s3cret"
    assert config.tts.backend == "none"
    assert config.snapshots_dir == tmp_path / "home" / "snapshots"


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("llm:\n  bakend: echo\n", "llm.bakend"),
        ("lmm:\n  backend: echo\n", "lmm"),
        ("server:\n  port: many\n", "server.port"),
        ("telemetry:\n  enabled: maybe\n", "telemetry.enabled"),
        ("llm: echo\n", "llm"),
        ("- a\n- b\n", "mapping"),
        ("llm: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_key(tmp_path: Path, yaml_text: str, needle: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        load_config(cfg, env={})


def test_bad_env_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CODA_PORT"):
        load_config(env={"CODA_PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"llm\.bogus"):
        load_config(env={"CODA_LLM_BOGUS": "1"})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml", env={})


def test_unrelated_coda_variables_are_ignored() -> None:
    config = load_config(env={"CODA_SOMETHING": "x", "CODA_CONFIG": ""})
    assert isinstance(config, Config)


def test_stall_budgets_come_from_the_file_and_env_and_must_not_be_negative(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  tts_budget: 0\n", encoding="utf-8")
    budgets = load_config(path, env={"CODA_PIPELINE_LLM_BUDGET": "2.5"}).pipeline.stage_budgets()
    assert budgets["llm"] == 2.5 and budgets["tts"] == 0  # 0: that stage is never timed
    assert Config().pipeline.stage_budgets()["llm"] == 5.0  # the first token within 5 s
    with pytest.raises(ConfigError, match=r"pipeline\.stt_budget must not be negative"):
        load_config(env={"CODA_PIPELINE_STT_BUDGET": "-1"})


def test_spoken_answer_caps_and_decoding_defaults_are_settable_and_checked() -> None:
    config = load_config(None, {})
    assert (config.llm.max_sentences, config.llm.temperature) == (2, 0.0)
    env = {"CODA_LLM_MAX_SENTENCES": "1", "CODA_LLM_MAX_WORDS": "12", "CODA_STT_LM_WEIGHT": "5"}
    config = load_config(None, env)
    assert (config.llm.max_sentences, config.llm.max_words, config.stt.lm_weight) == (1, 12, 5.0)
    with pytest.raises(ConfigError, match=r"max_sentences and llm\.max_words must be at least 1"):
        load_config(None, {"CODA_LLM_MAX_WORDS": "0"})
    with pytest.raises(ConfigError, match=r"stt\.lm_weight must not be negative"):
        load_config(None, {"CODA_STT_LM_WEIGHT": "-1"})
