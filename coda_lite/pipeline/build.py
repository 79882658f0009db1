"""Build the whole pipeline from a :class:`~coda_lite.config.Config`.

    pipeline = build_pipeline(load_config(), observer=debugger,
                              wrap_embedder=lambda e: CachedEmbedder(e), wrap_llm=None)
    result = await pipeline.manager.process_user_input("Hello")
    pipeline.components        # [stt, embedder, memory_store, llm, tts] health Components
    await pipeline.aclose()

``on_evict`` hears the long-term store's evictions (the service counts them).
``wrap_embedder`` / ``wrap_llm`` / ``wrap_stt`` / ``wrap_tts`` / ``wrap_memory_store`` let the
composition root wrap a stage (with a cache, or a fault guard) before it is handed to memory
and the conversation manager; the health components stay the unwrapped stage objects, and a
stage that outlives its deadline marks its own component (:mod:`coda_lite.pipeline.deadlines`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from coda_lite.config import Config
from coda_lite.llm import make_llm, select_backend
from coda_lite.memory import LongTermMemory, MemoryManager, ShortTermMemory
from coda_lite.memory.embedder import make_embedder
from coda_lite.pipeline.admission import Admission
from coda_lite.pipeline.conversation import ConversationManager
from coda_lite.pipeline.deadlines import STAGE_COMPONENTS, StageDeadlines
from coda_lite.pipeline.observer import NULL_OBSERVER, PipelineObserver
from coda_lite.pipeline.stages import LLM, STT, TTS, Component, Embedder
from coda_lite.speech.stt import make_stt
from coda_lite.speech.tts import make_tts


@dataclass
class Pipeline:
    config: Config
    manager: ConversationManager
    stt: STT
    memory: MemoryManager
    long_term: LongTermMemory
    embedder: Embedder  # the embedder handed to memory (possibly wrapped)
    llm: LLM  # the model handed to the manager (possibly wrapped)
    tts: TTS
    components: list[Component] = field(default_factory=list)
    llm_choice: tuple[str, str] = ("", "")  # (backend, why it was chosen)
    admission: Admission | None = None  # how many turns run and wait at once

    async def aclose(self) -> None:
        """Close network sessions and the memory database."""
        for obj in {id(x): x for x in (self.llm, *self.components)}.values():
            closer = getattr(obj, "aclose", None)
            if closer is not None:
                await closer()
        await asyncio.to_thread(self.long_term.close)


def build_pipeline(
    config: Config,
    *,
    observer: PipelineObserver = NULL_OBSERVER,
    wrap_embedder: Callable[[Embedder], Embedder] | None = None,
    wrap_llm: Callable[[LLM], LLM] | None = None,
    wrap_stt: Callable[[STT], STT] | None = None,
    wrap_tts: Callable[[TTS], TTS] | None = None,
    wrap_memory_store: Callable[[LongTermMemory], LongTermMemory] | None = None,
    llm_request_headers: Callable[[], Mapping[str, str]] | None = None,
    on_turn_wait: Callable[[float], None] | None = None,
    on_turn_shed: Callable[[str], None] | None = None,
    on_evict: Callable[[str, int], None] | None = None,
    on_memory_write: Callable[[BaseException | None], None] | None = None,
) -> Pipeline:
    """Every stage with its configured backend (the embedding model loads once per process).

    ``on_evict(owner, n)`` hears the long-term store evict ``n`` of ``owner``'s memories;
    ``on_memory_write(outcome)`` hears each of its writes end (``None``, or the exception)."""
    config.ensure_dirs()
    stt_component = make_stt(config.stt)
    stt = wrap_stt(stt_component) if wrap_stt else stt_component
    embedder_component = make_embedder(config.embeddings)
    embedder = wrap_embedder(embedder_component) if wrap_embedder else embedder_component
    long_term = LongTermMemory(
        config.memory_db_path,
        embedder,
        max_per_owner=config.memory.max_memories_per_owner,
        busy_timeout=config.memory.busy_timeout,
        on_evict=on_evict,
        on_write=on_memory_write,
    )
    memory = MemoryManager(
        ShortTermMemory(config.memory.short_term_turns),
        wrap_memory_store(long_term) if wrap_memory_store else long_term,
        embedder,
        k=config.memory.retrieve_k,
        min_score=config.memory.min_score,
    )
    llm_choice = select_backend(config.llm)
    models_dir = config.llm.models_dir or config.home / "models"
    llm_component = make_llm(config.llm, models_dir=models_dir, request_headers=llm_request_headers)
    llm = wrap_llm(llm_component) if wrap_llm else llm_component
    tts_component = make_tts(config.tts)
    tts = wrap_tts(tts_component) if wrap_tts else tts_component
    by_name = {"stt": stt_component, "memory_store": long_term, "llm": llm_component,
               "tts": tts_component}  # fmt: skip
    deadlines = StageDeadlines({stage: by_name[c] for stage, c in STAGE_COMPONENTS.items()})
    pipe = config.pipeline
    running = pipe.max_running_turns or (2 if llm_choice[0] == "local" else 8)
    admission = Admission(
        running,
        pipe.max_waiting_turns,
        pipe.queue_timeout,
        on_wait=on_turn_wait,
        on_shed=on_turn_shed,
    )
    manager = ConversationManager(
        stt,
        memory,
        llm,
        tts,
        observer,
        streaming=config.llm.stream,
        stage_timeouts=config.pipeline.stage_timeouts(),
        on_deadline=deadlines.passed,  # a late stage marks its component, traced or not
        admission=admission,
        first_phrase_words=config.tts.first_phrase_words,
    )
    return Pipeline(
        config=config,
        manager=manager,
        stt=stt,
        memory=memory,
        long_term=long_term,
        embedder=embedder,
        llm=llm,
        tts=tts,
        components=[stt_component, embedder_component, long_term, llm_component, tts_component],
        llm_choice=llm_choice,
        admission=admission,
    )
