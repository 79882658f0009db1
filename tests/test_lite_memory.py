"""Memory on the real embedding model and a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from coda_lite.config import EmbeddingsConfig
from coda_lite.memory import (
    LongTermMemory,
    MemoryManager,
    MemoryStoreError,
    ShortTermMemory,
    extract_facts,
)
from coda_lite.memory.embedder import HashingEmbedder, SentenceTransformerEmbedder, make_embedder
from coda_otel.protocols import Component, MemoryStateSource
from tests.support import require_module


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    require_module("sentence_transformers")
    emb = make_embedder(EmbeddingsConfig())
    assert isinstance(emb, SentenceTransformerEmbedder)
    return emb


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_real_model_puts_a_paraphrase_nearer_than_an_unrelated_sentence(
    embedder: SentenceTransformerEmbedder,
) -> None:
    v = embedder.encode(
        ["I live in Lisbon.", "My home is in Lisbon, Portugal.", "Green tea is my favourite drink."]
    )
    assert v.shape == (3, embedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert _cos(v[0], v[1]) > _cos(v[0], v[2]) + 0.2
    assert embedder.encode([]).shape == (0, embedder.dim)
    with pytest.raises(TypeError, match="sequence"):
        embedder.encode("one string")  # type: ignore[arg-type]


def test_model_loads_once_per_process(embedder: SentenceTransformerEmbedder) -> None:
    again = make_embedder(EmbeddingsConfig())
    assert isinstance(again, SentenceTransformerEmbedder)
    assert again._model is embedder._model


def test_retrieval_ranks_the_right_memory_first(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    store = LongTermMemory(tmp_path / "m.sqlite3", embedder)
    for text in ("My name is Ada.", "I live in Lisbon.", "I love green tea.", "I have a dog."):
        store.add(text)
    assert store.retrieve("Where do I live?", k=2)[0]["content"] == "I live in Lisbon."
    assert store.retrieve("What should I call you... I mean, what's my name?")[0]["content"] == (
        "My name is Ada."
    )
    assert store.retrieve("What do I like to drink?")[0]["content"] == "I love green tea."
    top = store.retrieve("Tell me about my pet", k=3)
    assert top[0]["content"] == "I have a dog." and len(top) == 3
    assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    store.close()


def test_sqlite_store_survives_a_restart(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "memory.sqlite3"
    store = LongTermMemory(path, embedder)
    added = store.add("I live in Lisbon.", importance=0.8, topics=["location"])
    store.close()
    with pytest.raises(MemoryStoreError, match="closed"):
        store.get_all_memories()

    reopened = LongTermMemory(path, embedder)  # a new process would do exactly this
    memories = reopened.get_all_memories()
    assert memories == [
        {
            "id": added["id"],
            "content": "I live in Lisbon.",
            "importance": 0.8,
            "topics": ["location"],
            "created_at": added["created_at"],
            "source": "user",
        }
    ]
    assert "embedding" not in memories[0]
    assert len(reopened.get_all_memories(include_embeddings=True)[0]["embedding"]) == embedder.dim
    assert reopened.retrieve("Where is my home?")[0]["id"] == added["id"]
    assert reopened.metadata["memory_count"] == 1
    assert reopened.get_all_topics() == ["location"]
    reopened.close()


async def test_store_is_a_component_whose_restart_reopens_the_file(
    embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    store = LongTermMemory(tmp_path / "m.sqlite3", embedder)
    assert isinstance(store, Component) and store.name == "memory_store"
    store.add("I love green tea.")
    await store.force_restart()
    beat = await store.get_heartbeat()
    assert beat["healthy"] and beat["models_loaded"] and beat["memory_count"] == 1
    store.close()
    assert not (await store.get_heartbeat())["healthy"]
    await store.restart()
    assert (await store.get_heartbeat())["healthy"]
    assert store.retrieve("tea")[0]["content"] == "I love green tea."
    store.close()


async def test_embedder_component_restart_reloads(embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(embedder, Component) and embedder.name == "embedder"
    before = embedder.encode(["hello"])
    await embedder.restart()
    beat = await embedder.get_heartbeat()
    assert beat["healthy"] and beat["models_loaded"] and beat["dim"] == embedder.dim
    assert np.allclose(embedder.encode(["hello"]), before, atol=1e-5)


def test_extraction_rules() -> None:
    facts = extract_facts("Hi! My name is ada and I live in lisbon. Where do I live?")
    assert [f.content for f in facts] == ["My name is Ada.", "I live in Lisbon."]
    assert facts[0].importance > facts[1].importance > 0.5
    assert "name" in facts[0].topics and "location" in facts[1].topics
    assert extract_facts("What is my name?") == []
    got = [f.content for f in extract_facts("I love green tea and I work as a nurse.")]
    assert got == ["I love green tea.", "I work as a nurse."]
    assert [f.content for f in extract_facts("Remember that the keys are in the drawer")] == [
        "The keys are in the drawer."
    ]
    assert extract_facts("The sky is blue.") == []


@pytest.fixture
def manager(embedder: SentenceTransformerEmbedder, tmp_path: Path) -> MemoryManager:
    store = LongTermMemory(tmp_path / "m.sqlite3", embedder)
    return MemoryManager(ShortTermMemory(4), store, embedder, k=3, min_score=0.3)


async def test_manager_remembers_and_reports_operations(manager: MemoryManager) -> None:
    ops: list[str] = []
    manager.add_operation_listener(lambda op, *, owner: ops.append(op))
    manager.add_operation_listener(lambda op, *, owner: 1 / 0)  # logged, not raised
    assert await manager.get_context("Where do I live?") == []
    added = await manager.add_interaction("My name is Ada and I live in Lisbon.", "Noted.")
    assert [m["content"] for m in added] == ["My name is Ada.", "I live in Lisbon."]
    again = await manager.add_interaction("I live in Lisbon.", "I know.")
    assert again == []  # not stored twice
    ctx = await manager.get_context("Where do I live?")
    assert ctx[0]["content"] == "I live in Lisbon."
    assert set(ctx[0]) == {"id", "content", "score", "topics"}
    assert await manager.get_context("   ") == []
    assert ops == ["retrieve", "add_interaction", "add_interaction", "retrieve"]

    state = manager.read_memory_state()
    assert isinstance(manager, MemoryStateSource)
    assert state["short_term"]["turn_count"] == 4
    assert [t["role"] for t in state["short_term"]["turns"]] == ["user", "assistant"] * 2
    assert set(state["short_term"]["turns"][0]) == {"role", "content", "timestamp", "turn_id"}
    assert state["long_term"]["memory_count"] == len(state["long_term"]["memories"]) == 2
    assert state["long_term"]["topics"] == ["identity", "location", "name"]
    json.dumps(state)  # plain JSON-able data

    # short-term memory is bounded; turn_count still counts every turn
    for i in range(3):
        await manager.add_interaction(f"turn {i}", "ok")
    assert len(manager.short_term.turns) == 4 and manager.short_term.turn_count == 10


async def test_export_clear_import_round_trip(manager: MemoryManager, tmp_path: Path) -> None:
    ops: list[str] = []
    manager.add_operation_listener(lambda op, *, owner: ops.append(op))
    await manager.add_interaction("I love green tea.", "Noted.")
    path = await manager.export(tmp_path / "out" / "memory.json")
    await manager.clear()
    assert manager.read_memory_state()["long_term"]["memory_count"] == 0
    assert await manager.import_(path) == 1
    state = manager.read_memory_state()
    assert [m["content"] for m in state["long_term"]["memories"]] == ["I love green tea."]
    assert state["short_term"]["turn_count"] == 2
    assert (await manager.get_context("What do I like to drink?"))[0]["content"] == (
        "I love green tea."
    )
    assert ops == ["add_interaction", "export", "clear", "import", "retrieve"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"long_term": {"memories": [{"content": ""}]}}')
    with pytest.raises(MemoryStoreError, match=r"memories\[0\]"):
        await manager.import_(bad)
    with pytest.raises(MemoryStoreError, match="not found"):
        await manager.import_(tmp_path / "nope.json")


async def test_snapshots_are_consistent_while_writing(manager: MemoryManager) -> None:
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def reader() -> None:
        while not stop.is_set():
            s = manager.read_memory_state()["long_term"]
            seen.append((s["memory_count"], len(s["memories"])))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(15):
            await manager.add_interaction(f"Remember that item {i} is in box {i}", "ok")
    finally:
        stop.set()
        t.join()
    assert seen and all(count == n for count, n in seen)


def test_hashing_embedder_is_a_deterministic_stand_in() -> None:
    emb = HashingEmbedder(64)
    a, b, c = emb.encode(["I live in Lisbon", "where do I live", "green tea"])
    assert np.allclose(emb.encode(["I live in Lisbon"])[0], a)
    assert _cos(a, b) > _cos(a, c)
    assert make_embedder(EmbeddingsConfig(backend="hashing")).model_name == "hashing-384"


def test_reading_all_memories_agrees_with_sqlite_through_writes_from_anywhere(
    tmp_path: Path,
) -> None:
    emb = HashingEmbedder(64)
    path = tmp_path / "m.sqlite3"
    store, other = LongTermMemory(path, emb), LongTermMemory(path, emb)  # two connections

    def from_sqlite() -> list[dict[str, object]]:
        fresh = LongTermMemory(path, emb)  # a new connection has no cached state
        try:
            return fresh.get_all_memories()
        finally:
            fresh.close()

    store.add("I live in Lisbon.", topics=["location"], created_at=20.0, memory_id="b")
    store.add("I love green tea.", topics=["drinks", "likes"], created_at=10.0, memory_id="c")
    assert [m["id"] for m in store.read_state()["memories"]] == ["c", "b"]  # mirror built
    store.add("Tie on time.", topics=["x"], created_at=20.0, memory_id="a")  # sorted in place
    store.add("I live in Porto.", topics=["location"], created_at=20.0, memory_id="b")  # replace
    state = store.read_state()
    assert state["memories"] == from_sqlite()
    assert [m["id"] for m in state["memories"]] == ["c", "a", "b"]
    assert state["memories"][2]["content"] == "I live in Porto."
    assert state["topics"] == store.get_all_topics() == ["drinks", "likes", "location", "x"]
    mine = store.get_all_memories()  # copies, the caller's to change
    mine[0]["topics"].append("mutated")
    mine[0]["content"] = "changed"
    assert store.get_all_memories()[0]["topics"] == ["drinks", "likes"]
    assert store.read_state()["memories"][0] == state["memories"][0]
    assert state["memories"][0]["content"] == "I love green tea."

    assert store.retrieve("I love green tea.", k=1)[0]["id"] == "c"  # vector index built
    other.add("I have a dog.", topics=["pets"], memory_id="d")  # committed elsewhere
    assert [m["id"] for m in store.get_all_memories()] == ["c", "a", "b", "d"]
    assert store.retrieve("I have a dog.", k=1)[0]["id"] == "d"  # the vector index too
    other.clear()
    assert store.read_state() == {"memories": [], "memory_count": 0, "topics": [],
                                  "max_memories": 200, "evicted_count": 0}  # fmt: skip
    store.add("I love green tea.", topics=["drinks"], memory_id="e")
    store.clear()
    assert store.get_all_memories() == from_sqlite() == []
    store.close()
    other.close()


async def test_owners_never_read_or_write_each_others_memory(
    manager: MemoryManager, tmp_path: Path
) -> None:
    await manager.add_interaction("I live in Lisbon.", "Noted.", owner="ada")
    await manager.add_interaction("I live in Oslo.", "Noted.", owner="bob")
    ada = await manager.get_context("Where do I live?", owner="ada")
    assert [m["content"] for m in ada] == ["I live in Lisbon."]
    assert await manager.get_context("Where do I live?", owner="carol") == []
    # the same fact told by two owners is stored for each
    assert len(await manager.add_interaction("I live in Oslo.", "Noted.", owner="ada")) == 1

    exported = await manager.export(tmp_path / "ada.json", owner="ada")
    data = json.loads(exported.read_text())
    assert {m["content"] for m in data["long_term"]["memories"]} == {
        "I live in Lisbon.",
        "I live in Oslo.",
    }
    # importing Ada's file (same memory ids) into Carol copies, never moves or replaces
    assert await manager.import_(exported, owner="carol") == 2
    assert len(manager.read_memory_state("ada")["long_term"]["memories"]) == 2
    carol = manager.read_memory_state("carol")
    assert carol["owner"] == "carol" and carol["long_term"]["memory_count"] == 2
    bob = manager.read_memory_state("bob")
    assert [m["content"] for m in bob["long_term"]["memories"]] == ["I live in Oslo."]
    assert [t["content"] for t in bob["short_term"]["turns"]] == ["I live in Oslo.", "Noted."]
    await manager.clear(owner="carol")
    assert manager.read_memory_state("carol")["long_term"]["memory_count"] == 0
    assert manager.read_memory_state("ada")["long_term"]["memory_count"] == 2


def test_memories_per_owner_are_capped_and_evictions_counted(tmp_path: Path) -> None:
    evicted: list[tuple[str, int]] = []
    store = LongTermMemory(
        tmp_path / "m.sqlite3",
        HashingEmbedder(64),
        max_per_owner=3,
        on_evict=lambda owner, n: evicted.append((owner, n)),
    )
    store.add("I like tea.", importance=0.9, owner="ada")
    for i in range(4):
        store.add(f"Fact number {i}.", importance=0.5, owner="ada")
    store.add("Bob's only fact.", owner="bob")
    ada = store.read_state(owner="ada")
    assert ada["memory_count"] == 3 and ada["max_memories"] == 3
    assert ada["evicted_count"] == 2 and evicted == [("ada", 1), ("ada", 1)]
    # least important first, then oldest: the important one and the newest stay
    assert [m["content"] for m in ada["memories"]] == [
        "I like tea.",
        "Fact number 2.",
        "Fact number 3.",
    ]
    assert store.read_state(owner="bob")["memory_count"] == 1
    assert stat.S_IMODE((tmp_path / "m.sqlite3").stat().st_mode) == 0o600


def test_read_state_hands_out_the_same_object_until_the_memory_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = LongTermMemory(path, HashingEmbedder(64), max_per_owner=4)

    def objects(owner: str = "default") -> dict[str, dict[str, object]]:
        return {m["id"]: m for m in store.read_state(owner=owner)["memories"]}

    def from_sqlite(owner: str) -> list[dict[str, object]]:
        fresh = LongTermMemory(path, HashingEmbedder(64))  # no mirror: straight from SQLite
        try:
            return fresh.get_all_memories(owner=owner)
        finally:
            fresh.close()

    store.add("I live in Lisbon.", importance=0.9, memory_id="a", created_at=1.0)
    store.add("I love tea.", topics=["drinks"], memory_id="b", created_at=2.0)
    store.add("Bob has a cat.", memory_id="x", created_at=1.5, owner="bob")
    first, bob = objects(), objects("bob")
    again = store.read_state()
    assert again["memories"] is not store.read_state()["memories"]  # each read its own list
    assert all(m is first[m["id"]] for m in again["memories"])  # the same dicts

    assert store.read_state()["topics"] == ["drinks"]
    store.add("I love green tea.", topics=["tea"], memory_id="b", created_at=2.0)  # update
    now = objects()
    assert now["a"] is first["a"] and now["b"] is not first["b"]
    assert first["b"]["content"] == "I love tea."  # what was handed out is never changed
    assert first["b"]["topics"] == ["drinks"]
    assert now["b"]["content"] == "I love green tea."
    assert store.read_state()["topics"] == store.get_all_topics() == ["tea"]
    assert store.get_all_topics(owner=None) == ["tea"]

    store.import_data([{"content": "I have a dog.", "id": "c", "created_at": 3.0}])
    after_import = objects()
    assert after_import["a"] is first["a"] and after_import["b"] is now["b"]
    assert list(after_import) == ["a", "b", "c"]

    # the cap is 4: beyond it an add evicts the least important, oldest memory (the third
    # add evicts the memory it adds)
    for i, importance in enumerate([0.1, 0.1, 0.05]):
        store.add(f"Fact number {i}.", importance=importance, created_at=10.0 + i)
    kept = store.read_state()["memories"]
    assert kept == from_sqlite("default")
    assert store.read_state()["topics"] == ["tea"]
    assert [m["content"] for m in kept][2:] == ["I have a dog.", "Fact number 1."]
    assert kept[0] is first["a"] and kept[1] is now["b"]  # the others: the same objects

    copies = store.get_all_memories()  # copies, the caller's to change
    copies[0]["topics"].append("mutated")
    copies[0]["content"] = "changed"
    assert store.read_state()["memories"][0] is first["a"]
    assert first["a"]["content"] == "I live in Lisbon." and first["a"]["topics"] == []

    store.clear()  # the default owner's memories only
    assert objects() == {} and store.read_state()["topics"] == []
    assert objects("bob")["x"] is bob["x"]  # another owner's memories stay as they were
    store.add("I live in Lisbon.", importance=0.9, memory_id="a", created_at=1.0)
    assert objects()["a"] is not first["a"] and objects()["a"] == first["a"]
    store.clear(None)
    assert objects("bob") == {} and from_sqlite("bob") == []
    store.close()


def test_a_database_from_before_owners_opens_with_its_memories_under_default(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE memories (id TEXT PRIMARY KEY, content TEXT NOT NULL, importance REAL"
        " NOT NULL, topics TEXT NOT NULL, created_at REAL NOT NULL, source TEXT NOT NULL,"
        " embedding BLOB, dim INTEGER, model TEXT);"
        "INSERT INTO memories VALUES ('m1', 'I live in Lisbon.', 0.8, '[]', 1.0, 'user',"
        " NULL, NULL, NULL);"
    )
    old.commit()
    old.close()
    store = LongTermMemory(path, HashingEmbedder(64))
    assert [m["id"] for m in store.get_all_memories()] == ["m1"]  # the default owner's
    assert store.get_all_memories(owner="ada") == []
    assert store.approx_count == 1
