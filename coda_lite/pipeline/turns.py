"""The turns still running, so that a newer one can cut them short (barge-in).

    live = LiveTurns()
    turn = live.start("s1", conv)             # in the turn's own task
    turn.reply = reply                        # what was generated and spoken so far
    ...
    live.finish(turn)

    await live.interrupt_session("s1", "new_turn")     # a new turn in s1: stop the old one
    live.interrupt_task(task, "client_disconnect")     # the client of that turn left
    result = await guarded(asyncio.ensure_future(run()), live)   # TurnInterrupted if cut short

Interrupting a turn tells its conversation scope the end reason (``"interrupted"``, with who
interrupted) before cancelling its task, so every stage cancelled from then on says so;
:meth:`LiveTurns.record_interruption` then adds how much of the answer had been generated and
spoken. A cancelled turn never reaches its memory update, so no half answer is remembered.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

from coda_lite.pipeline.observer import ConversationScope
from coda_lite.pipeline.reply import Reply

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
WIND_DOWN_S = 5.0  # s a new turn waits for the one it interrupted to stop
T = TypeVar("T")


class TurnInterrupted(Exception):
    """The turn was cut short by a newer turn in its session (or an ``interrupt`` command)."""

    def __init__(self) -> None:
        super().__init__("this turn was interrupted (a newer turn in its session, or a command)")


async def guarded(turn: asyncio.Task[T], live: LiveTurns) -> T:
    """Await ``turn`` (a task) for a caller: if the caller is cancelled (an HTTP client that
    left), the turn is interrupted as ``client_disconnect``; if the turn is interrupted by
    someone else, the caller gets :class:`TurnInterrupted` rather than a cancellation."""
    try:
        return await asyncio.shield(turn)
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():  # the caller itself was cancelled
            if live.interrupt_task(turn, "client_disconnect") is None:
                turn.cancel()
            await asyncio.wait({turn}, timeout=WIND_DOWN_S)
            raise
        raise TurnInterrupted() from None


@dataclass(eq=False)
class LiveTurn:
    task: asyncio.Task[Any]
    session_id: str | None
    conv: ConversationScope
    reply: Reply | None = None
    interrupted_by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class LiveTurns:
    """Running turns by session and by task (one event loop; no locking needed)."""

    def __init__(self) -> None:
        self._by_session: dict[str, LiveTurn] = {}
        self._by_task: dict[asyncio.Task[Any], LiveTurn] = {}

    def start(self, session_id: str | None, conv: ConversationScope) -> LiveTurn | None:
        task = asyncio.current_task()
        if task is None:
            return None
        turn = LiveTurn(task, session_id, conv)
        self._by_task[task] = turn
        if session_id is not None:
            self._by_session[session_id] = turn
        return turn

    def finish(self, turn: LiveTurn | None) -> None:
        if turn is None:
            return
        if self._by_task.get(turn.task) is turn:
            del self._by_task[turn.task]
        if turn.session_id is not None and self._by_session.get(turn.session_id) is turn:
            del self._by_session[turn.session_id]

    def running(self, session_id: str) -> LiveTurn | None:
        turn = self._by_session.get(session_id)
        return turn if turn is not None and not turn.task.done() else None

    def interrupt(self, turn: LiveTurn, source: str) -> bool:
        """Cut ``turn`` short (once); False when it already ended or was interrupted."""
        if turn.task.done() or turn.interrupted_by is not None:
            return False
        turn.interrupted_by = source
        try:
            turn.conv.set_end_reason(INTERRUPTED, {"interrupted_by": source})
        except Exception:  # the observer's trouble never keeps a turn from being stopped
            log.warning("could not mark the turn interrupted", exc_info=True)
        turn.task.cancel(f"{INTERRUPTED} by {source}")
        return True

    def interrupt_task(self, task: asyncio.Task[Any], source: str) -> LiveTurn | None:
        turn = self._by_task.get(task)
        return turn if turn is not None and self.interrupt(turn, source) else None

    async def interrupt_session(
        self, session_id: str | None, source: str, *, wait: float = WIND_DOWN_S
    ) -> LiveTurn | None:
        """Interrupt the session's running turn and wait (bounded) until it has stopped."""
        turn = self.running(session_id) if session_id is not None else None
        if turn is None or turn.task is asyncio.current_task():
            return None
        if not self.interrupt(turn, source):
            return None
        await asyncio.wait({turn.task}, timeout=wait)
        return turn

    def record_interruption(self, turn: LiveTurn | None) -> None:
        """In the cancelled turn: add how much of the answer was generated and spoken."""
        if turn is None or turn.interrupted_by is None:
            return
        turn.details = {"interrupted_by": turn.interrupted_by}
        if turn.reply is not None:
            turn.details.update(turn.reply.progress())
        try:
            turn.conv.set_end_reason(INTERRUPTED, turn.details)
        except Exception:
            log.warning("could not record the interruption", exc_info=True)
