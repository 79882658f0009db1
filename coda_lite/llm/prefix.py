"""The prompt's fixed beginning, read by the model once: its key/value cache, reused every turn.

    prefix = PromptPrefix()
    past = prefix.past_for(model, input_ids, prefix_ids)   # a fresh copy to generate from, or None
    model.generate(input_ids=input_ids, **starting_from(past), ...)

Every turn's prompt starts with the same instruction and worked examples (186 of SmolLM2's
~220 prompt tokens); reading them again took most of the time to the first token (~1 s of
2-core CPU against ~0.3 s for the rest). Here the model reads them once; each generation
starts from a copy of that cache (``generate`` extends the cache it is given, so the kept one
must not be handed out) and reads only the tokens after it. Greedy answers are the same
token for token. ``prefix_ids`` that do not begin ``input_ids`` (a template that tokenizes
the joint differently) get no cache rather than a wrong one. One prefix is kept: the
instruction changes only with the configuration. Called under the model's generation lock
(one thread at a time); imports torch, so the backend imports this module lazily.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import transformers
from packaging.version import Version

#: ``generate``'s keyword for a cache to start from, and the model output's name for it:
#: ``cache`` since transformers 5.24, which deprecates ``past_key_values`` (kept until 6.0).
CACHE_KEYWORD = (
    "cache" if Version(transformers.__version__).release >= (5, 24) else "past_key_values"
)


def starting_from(past: Any) -> dict[str, Any]:
    """``generate`` keywords that start it from ``past`` (none when there is no cache)."""
    return {} if past is None else {CACHE_KEYWORD: past}


class PromptPrefix:
    """The key/value cache of the last prompt prefix one model read, keyed by its tokens."""

    def __init__(self) -> None:
        self._model: Any = None
        self._tokens: torch.Tensor | None = None
        self._past: Any = None
        #: generations that started from the kept prefix, and prefixes read afresh
        self.hits = 0
        self.misses = 0

    def past_for(self, model: Any, input_ids: torch.Tensor, prefix_ids: torch.Tensor) -> Any:
        """A copy of the cache for ``prefix_ids`` (reading them first if they are new), or
        None when they are not a strict beginning of ``input_ids`` (one prompt, 1 x n)."""
        n = int(prefix_ids.shape[-1])
        if n == 0 or n >= int(input_ids.shape[-1]):
            return None
        tokens = prefix_ids.reshape(-1)
        if not torch.equal(input_ids.reshape(-1)[:n], tokens):
            return None
        kept = self._tokens
        if self._model is not model or kept is None or not torch.equal(kept, tokens):
            with torch.no_grad():
                out = model(input_ids=tokens.reshape(1, -1), use_cache=True)
            past = getattr(out, CACHE_KEYWORD)  # the output names it as generate() does
            self._model, self._tokens, self._past = model, tokens.clone(), past
            self.misses += 1
        else:
            self.hits += 1
        return copy.deepcopy(self._past)
