"""Hardening against a real ``coda-lite serve``: what an adversarial run of the service found.

One server for the module (the embedding model loads once). The LLM is the deterministic echo
backend, so a cross answer can only come from memory, never from the model.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import sqlite3
import stat
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from coda_otel.snapshots.store import SnapshotStore
from tests.service_harness import Service, coda_service

pytestmark = [pytest.mark.slow]

NAMES = [
    "Ada", "Boris", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kasia", "Lars", "Mina", "Nadia", "Oskar", "Pablo", "Quentin", "Rosa", "Sven", "Tomasz",
]  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("coda-home")
    config = (
        "tts:\n  backend: none\n"
        "memory:\n  busy_timeout: 2\n  max_memories_per_owner: 5\n"
        "server:\n  max_body_bytes: 4000000\n  header_timeout: 1.5\n  body_timeout: 1.5\n"
        "telemetry:\n  health_interval: 0.5\n  snapshot_interval: 1\n  llm_cache_size: 0\n"
    )
    with coda_service(home, config=config) as service:
        yield service


def _name_of(response: str) -> set[str]:
    return {n for n in NAMES if n in response}


def test_twenty_parallel_sessions_each_get_only_their_own_memory(service: Service) -> None:
    def converse(i: int) -> tuple[int, str]:
        told = service.turn(text=f"My name is {NAMES[i]}.", session_id=f"par-{i}")
        assert told.status_code == 200, told.text
        asked = service.turn(text="What is my name?", session_id=f"par-{i}")
        assert asked.status_code == 200, asked.text
        return i, asked.json()["response"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(converse, range(20)))
    cross = [(NAMES[i], r) for i, r in answers if _name_of(r) != {NAMES[i]}]
    assert cross == [], f"{len(cross)} of 20 sessions got someone else's (or no) name: {cross}"


def test_user_id_owns_memory_across_sessions_and_nothing_else(service: Service) -> None:
    assert service.turn(text="I live in Reykjavik.", session_id="u-a1", user_id="uid-a").ok
    same_user = service.turn(text="Where do I live?", session_id="u-a2", user_id="uid-a")
    assert "Reykjavik" in same_user.json()["response"]
    other_user = service.turn(text="Where do I live?", session_id="u-a1", user_id="uid-b")
    assert "Reykjavik" not in other_user.json()["response"]
    session_only = service.turn(text="Where do I live?", session_id="u-a1")
    assert "Reykjavik" not in session_only.json()["response"]
    bad = service.turn(text="hi", user_id="../etc")
    assert bad.status_code == 400 and "user_id" in bad.json()["error"]["message"]


def _snapshot_docs(
    service: Service,
    owners: set[str],
    *,
    ready: Callable[[dict[str, Any]], bool] = lambda d: bool(d["long_term"]["memories"]),
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Snapshot documents of ``owners`` once each has one that is ``ready`` (holds a memory).

    Snapshots are written behind and dropped when the writer's queue is full (after a burst
    of turns), so an owner still missing one is asked a question (one more operation).
    """
    latest: list[dict[str, Any]] = []

    def all_ready() -> bool:
        paths = sorted((service.home / "snapshots").glob("*.json"))
        docs = [json.loads(p.read_text()) for p in paths]
        latest[:] = [d for d in docs if d.get("owner") in owners]
        done = {d["owner"] for d in latest if ready(d)}
        for owner in owners - done:
            service.turn(text="What do you know?", session_id=owner)
        return done == owners

    with contextlib.suppress(TimeoutError):  # the caller asserts on what was written
        service.eventually(all_ready, timeout=timeout, what=f"snapshots of {sorted(owners)}")
    return latest


def test_each_snapshot_holds_one_owners_memory(service: Service) -> None:
    for i in (0, 1):
        assert service.turn(text=f"My name is {NAMES[i]}.", session_id=f"snap-{i}").ok
    docs = _snapshot_docs(service, {"snap-0", "snap-1"})
    assert {d["owner"] for d in docs} == {"snap-0", "snap-1"}
    seen: dict[str, set[str]] = {"snap-0": set(), "snap-1": set()}
    for doc in docs:
        texts = [t["content"] for t in doc["short_term"]["turns"]]
        texts += [m["content"] for m in doc["long_term"]["memories"]]
        seen[doc["owner"]] |= {n for t in texts for n in _name_of(t)}
    assert seen == {"snap-0": {NAMES[0]}, "snap-1": {NAMES[1]}}
    listed = {i.snapshot_id: i.owner for i in SnapshotStore(service.home / "snapshots").list()}
    assert {listed[d["snapshot_id"]] for d in docs} == {"snap-0", "snap-1"}  # lists show it


def test_snapshot_files_are_redacted_and_private(service: Service) -> None:
    secret = "Mail me at ada.lovelace@example.com or call +44 20 7946 0958."
    assert service.turn(text=secret, session_id="pii-1").ok
    docs = _snapshot_docs(service, {"pii-1"}, ready=lambda d: bool(d["short_term"]["turns"]))
    assert docs, "no snapshot of the PII turn was written"
    raw = json.dumps(docs)
    assert "ada.lovelace@example.com" not in raw and "7946" not in raw
    assert "[EMAIL]" in raw
    home = service.home
    for folder in (home / "snapshots", home / "data", home / "pipeline_logs", home / "traces"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    logs = list((home / "pipeline_logs").glob("*.json"))
    assert logs
    for f in [home / "data" / "memory.sqlite3", *(home / "snapshots").glob("*.json"), *logs]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def _wav_header_only(rate: int, data: bytes, channels: int = 1, width: int = 2) -> bytes:
    """A WAV whose header declares ``rate`` (the wave module refuses to write odd rates)."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * width, channels * width,
                      width * 8)  # fmt: skip
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _rss(service: Service) -> float:
    text = requests.get(f"{service.base}/metrics", timeout=30).text
    line = next(ln for ln in text.splitlines() if ln.startswith("process_resident_memory_bytes"))
    return float(line.split()[-1])


def test_hostile_wav_headers_are_refused_before_decoding(service: Service) -> None:
    noise = bytes(random.Random(1).getrandbits(8) for _ in range(10_000))
    bomb = base64.b64encode(_wav_header_only(1, noise)).decode()
    before = _rss(service)
    for _ in range(4):
        r = service.turn(audio_wav_base64=bomb)
        assert r.status_code == 422, r.text
        assert "sample rate of 1 Hz" in r.json()["error"]["message"]
    grown = _rss(service) - before
    assert grown < 50 * 2**20, f"resident memory grew by {grown / 2**20:.0f} MiB"

    cases = {
        "10000000 Hz": _wav_header_only(10_000_000, noise),
        "unsupported format (64 channels": _wav_header_only(16000, noise[:8192], channels=64),
    }
    for message, wav in cases.items():
        r = service.turn(audio_wav_base64=base64.b64encode(wav).decode())
        assert r.status_code == 422 and message in r.json()["error"]["message"], r.text
    too_long = _wav_header_only(8000, b"\x01\x02" * 8000 * 31)  # 31 s, stt.max_seconds 30
    r = service.turn(audio_wav_base64=base64.b64encode(too_long).decode())
    assert r.status_code == 413 and r.json()["error"]["code"] == "audio_too_long", r.text
    assert "at most 30 s" in r.json()["error"]["message"]


def test_a_locked_database_stalls_neither_scrapes_nor_questions(service: Service) -> None:
    assert service.turn(text="My name is Ines.", session_id="lock-q").ok
    holder = sqlite3.connect(service.home / "data" / "memory.sqlite3", timeout=1)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            llm_done = service.metric('coda_pipeline_stage_duration_seconds_count{stage="llm"}')
            writer = pool.submit(service.turn, text="My name is Lars.", session_id="lock-w")
            # its llm stage ended: the memory update that follows now waits for the database
            service.eventually(
                lambda: (
                    service.metric('coda_pipeline_stage_duration_seconds_count{stage="llm"}')
                    > llm_done
                ),
                what="the writer's llm stage to end",
            )
            t0 = time.monotonic()
            scrape = requests.get(f"{service.base}/metrics", timeout=30)
            scrape_s = time.monotonic() - t0
            t0 = time.monotonic()
            health = requests.get(f"{service.base}/health/live", timeout=30)
            question = service.turn(text="What is my name?", session_id="lock-q")
            question_s = time.monotonic() - t0
            assert scrape.status_code == health.status_code == question.status_code == 200
            assert "Ines" in question.json()["response"]
            assert scrape_s < 1.0 and question_s < 1.5, (scrape_s, question_s)
            written = writer.result(timeout=60)
    finally:
        holder.rollback()
        holder.close()
    # the fact could not be stored, but the user still got the answer, with a warning
    assert written.status_code == 200, written.text
    assert "locked" in written.json()["warnings"][0]
    text = requests.get(f"{service.base}/metrics", timeout=30).text
    prefix = "coda_pipeline_stage_errors_total{"
    failed = [ln for ln in text.splitlines() if ln.startswith(prefix) and "memory_update" in ln]
    assert failed and float(failed[0].split()[-1]) >= 1


def test_deeply_nested_json_is_a_bad_request(service: Service) -> None:
    for path, depth in (("/v1/turns", 100_000), ("/debug/faults", 2_000)):
        deep = b"[" * depth + b"]" * depth
        r = requests.post(f"{service.base}{path}", data=deep, timeout=30,
                          headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "host",
    ["evil.example@127.0.0.1", "127.0.0.1/evil", "127.0.0.1:8765,evil.example", "127.0.0.1:x"],
)
def test_host_headers_that_only_contain_a_loopback_name_are_refused(
    service: Service, host: str
) -> None:
    r = requests.post(f"{service.base}/v1/turns", json={"text": "hi"}, headers={"Host": host},
                      timeout=30)  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_host", r.text


def test_the_own_origin_check_respects_the_scheme(service: Service) -> None:
    port = service.base.rsplit(":", 1)[1]
    own = service.turn("hi", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert own.status_code == 200, own.text
    for origin in (f"https://127.0.0.1:{port}", f"ftp://127.0.0.1:{port}", "http://127.0.0.1"):
        r = service.turn("hi", headers={"Origin": origin})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_origin", origin


def test_a_connection_that_never_finishes_its_headers_is_dropped(service: Service) -> None:
    port = int(service.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        t0 = time.monotonic()
        conn.settimeout(10)
        try:
            closed = conn.recv(1024) == b""
        except ConnectionResetError:
            closed = True
        waited = time.monotonic() - t0
    assert closed and waited < 6, f"the server kept a half-sent request open for {waited:.1f} s"


def test_a_body_that_never_ends_is_refused_and_liveness_keeps_answering(
    service: Service,
) -> None:
    port = int(service.base.rsplit(":", 1)[1])
    head = (
        "POST /v1/turns HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    stuck = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:
        for conn in stuck:  # one chunk of a body whose last chunk never comes
            conn.sendall(head.encode() + b'8\r\n{"text":\r\n')
        assert service.get("/health/live", timeout=5).status_code == 200
        t0 = time.monotonic()
        answers = [conn.recv(4096) for conn in stuck]
        waited = time.monotonic() - t0
    finally:
        for conn in stuck:
            conn.close()
    assert all(a.startswith(b"HTTP/1.1 408") and b"body_timeout" in a for a in answers), answers[0]
    assert waited < 10, f"bodies were waited for {waited:.1f} s"
    assert service.turn("Still here?").status_code == 200


def test_long_term_memory_is_capped_per_owner_and_evictions_show(service: Service) -> None:
    facts = " ".join(f"I like colour number {i}." for i in range(12))
    assert service.turn(text=facts, session_id="cap-1").ok
    text = requests.get(f"{service.base}/metrics", timeout=30).text
    evicted = next(ln for ln in text.splitlines() if ln.startswith("coda_memory_evictions_total"))
    assert float(evicted.split()[-1]) >= 7
    docs = _snapshot_docs(service, {"cap-1"})
    latest = max(docs, key=lambda d: d["timestamp"])
    assert latest["long_term"]["memory_count"] <= 5
    assert latest["long_term"]["max_memories"] == 5 and latest["long_term"]["evicted_count"] >= 7


async def _ws_request(ws: Any, rid: str, mtype: str, data: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json({"type": mtype, "id": rid, "data": data})
    while True:
        frame: dict[str, Any] = await ws.receive_json(timeout=30)
        if frame.get("id") == rid:
            return frame


async def test_websocket_ids_snapshots_and_owners(service: Service) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{service.base}/ws") as ws:
        assert (await ws.receive_json(timeout=30))["type"] == "hello"
        await _ws_request(ws, "s", "subscribe", {"events": []})
        for sid in ("a..b", ".hidden"):
            bad = await _ws_request(ws, sid, "text_input", {"text": "hi", "session_id": sid})
            assert bad["type"] == "error" and bad["data"]["code"] == "invalid_params", bad
        told = await _ws_request(ws, "t1", "text_input",
                                 {"text": "I live in Porto.", "user_id": "ws-user"})  # fmt: skip
        assert told["type"] == "text_input_result", told
        asked = await _ws_request(ws, "t2", "text_input",
                                  {"text": "Where do I live?", "user_id": "ws-user"})  # fmt: skip
        assert "Porto" in asked["data"]["response"]
        other = await _ws_request(ws, "t3", "text_input",
                                  {"text": "Where do I live?", "user_id": "ws-other"})  # fmt: skip
        assert "Porto" not in other["data"]["response"]
        snap = await _ws_request(ws, "m", "take_memory_snapshot", {"user_id": "ws-user"})
        assert snap["type"] == "take_memory_snapshot_result", snap
        path = Path(snap["data"]["path"])
        assert path.is_file() and path.stat().st_size == snap["data"]["bytes"]  # written
        doc = json.loads(path.read_text())
        assert doc["owner"] == "ws-user" and "Porto" in json.dumps(doc)
