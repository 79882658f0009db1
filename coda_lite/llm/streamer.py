"""The two ``transformers`` hooks the local model uses while it generates on a worker thread.

    streamer = LoopStreamer(tokenizer, post)       # post(text) for each decoded piece
    model.generate(**ids, streamer=streamer, stopping_criteria=[StopOnEvent(stop)])

Kept apart from :mod:`coda_lite.llm.local` so that importing the backend (to learn whether
it can run) does not import torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteria, TextStreamer


class LoopStreamer(TextStreamer):  # type: ignore[misc]
    """Hands each piece of decoded text to ``post`` (which forwards it to the event loop)."""

    def __init__(self, tokenizer: Any, post: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._post = post

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self._post(text)


class StopOnEvent(StoppingCriteria):  # type: ignore[misc]
    """Stops generating at the next token once ``event`` is set (the reader went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
