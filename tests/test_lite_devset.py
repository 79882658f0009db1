"""The development set and how an answer is judged to hold the remembered fact."""

from __future__ import annotations

import pytest

from benchmarks.bench_answers import contains_fact, load_devset, normalized, quick_subset
from coda_lite.memory.extract import extract_facts


def test_every_told_line_is_remembered_and_every_session_asks() -> None:
    items = load_devset()
    assert 30 <= len(items) <= 40
    assert all(extract_facts(i.told) for i in items if i.told)  # the memory keeps each fact
    assert len(quick_subset(items)) == 2 * len({i.session for i in items})


def test_an_answer_holds_the_fact_as_whole_words_in_any_case() -> None:
    assert normalized("It's 42!") == "it s 42"
    assert contains_fact("Your name is ADA.", ["Ada"])
    assert contains_fact("You have 2 bicycles.", ["two", "2"])
    assert not contains_fact("You have 20 pairs of shoes.", ["2"])
    assert not contains_fact("Adam is here.", ["Ada"])


def test_a_bad_devset_line_is_named() -> None:
    with pytest.raises(ValueError, match="devset line 2 is not a pair"):
        load_devset('{"session": "a", "told": "", "asked": "?", "expect": ["x"]}\n{"nope": 1}')
    with pytest.raises(ValueError, match="devset line 1 expects nothing"):
        load_devset('{"session": "a", "told": "", "asked": "?", "expect": []}')
