"""Spoken answers: the sentence and word caps, markdown and list markers stripped, streamed
shaping that agrees with the whole-text shaping, and the word error rate of recognition."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from coda_lite.llm.spoken import SpokenAnswer, sentence_count, spoken_text
from coda_lite.speech.sentences import SentenceSplitter
from coda_lite.speech.wer import word_error_rate, word_errors, words_of


def test_an_answer_ends_at_its_second_sentence() -> None:
    text = "Your name is Ada. You live in Lisbon. You also love green tea."
    assert spoken_text(text) == "Your name is Ada. You live in Lisbon."
    assert spoken_text(text, max_sentences=1) == "Your name is Ada."
    assert spoken_text("Hello! How can I help? I am Coda.") == "Hello! How can I help?"


def test_a_number_with_a_point_does_not_end_a_sentence() -> None:
    assert spoken_text("It costs 3.5 euros. That is cheap. Buy it.") == (
        "It costs 3.5 euros. That is cheap."
    )


def test_the_word_budget_cuts_a_run_on_sentence_and_closes_it() -> None:
    text = " ".join(["word"] * 60)
    out = spoken_text(text, max_words=12)
    assert out == " ".join(["word"] * 12) + "."
    assert sentence_count(out) == 1


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Paris** is the `capital`.", "Paris is the capital."),
        ("## Answer\nParis.", "Answer. Paris."),
        ("1. Tea\n2. Coffee\n3. Juice", "Tea. Coffee."),
        ("- green tea\n- coffee", "green tea. coffee"),
        ("Here are two:\n* tea\n* coffee", "Here are two. tea."),
        ("Assistant: Your name is Ada.", "Your name is Ada."),
        ("Your name is Ada.\nUser: and mine?", "Your name is Ada."),
        ("I *really* like it", "I really like it"),
        ("Sure, I can help,", "Sure, I can help."),
    ],
)
def test_markdown_lists_and_speaker_labels_are_not_spoken(raw: str, spoken: str) -> None:
    assert spoken_text(raw) == spoken


def test_streamed_pieces_are_whole_words_and_stop_at_the_cap() -> None:
    shaper = SpokenAnswer(max_sentences=2)
    pieces = ["**Par", "is** is", " the", " capital", ".", " It", " is", " big", ".", " It", " has"]
    out = []
    for piece in pieces:
        out.append(shaper.feed(piece))
        if shaper.done:
            break
    assert shaper.done and shaper.finish() == ""
    assert "".join(out) == "Paris is the capital. It is big." == shaper.text
    assert "*" not in "".join(out) and "Par" not in out  # never half a word or a marker


def test_finish_hands_out_the_last_word_and_turns_a_dangling_comma_into_a_stop() -> None:
    shaper = SpokenAnswer()
    said = shaper.feed("Hello there, how are") + shaper.feed(" you")
    assert not shaper.done and said == "Hello there, how are"
    said += shaper.finish()
    assert said == "Hello there, how are you" and shaper.done
    assert shaper.feed("more") == ""
    assert spoken_text("Here is what I know:") == "Here is what I know."


def test_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SpokenAnswer(max_sentences=0)


@given(st.lists(st.sampled_from(["Hi", " there", ".", " **Yes**", "\n", "- ", "1. ", " ok", "!"])))
@example(pieces=["Hi"] + [" there"] * 9)  # the word cap reached exactly as a piece arrives
def test_streaming_in_any_pieces_says_what_the_whole_text_says(pieces: list[str]) -> None:
    shaper = SpokenAnswer(max_sentences=2, max_words=8)
    streamed = "".join(shaper.feed(p) for p in pieces) + shaper.finish()
    whole = spoken_text("".join(pieces), max_sentences=2, max_words=8)
    assert streamed.strip() == whole
    assert sentence_count(whole) <= 2 and len(whole.split()) <= 8


def test_the_shaped_answer_is_what_the_speech_splitter_cuts() -> None:
    answer = spoken_text("Your name is Ada. You live in Lisbon. Bye.")
    splitter = SentenceSplitter()
    sentences = splitter.feed(answer + " ")
    rest = splitter.flush()
    assert sentences == ["Your name is Ada.", "You live in Lisbon."] and rest is None


def test_word_error_rate_counts_substitutions_deletions_and_insertions() -> None:
    assert words_of("What's my name, Ada?") == ["what's", "my", "name", "ada"]
    assert word_errors("My name is Ada.", "my name is eva") == (1, 4)
    assert word_errors("Where do I live?", "where do i") == (1, 4)
    assert word_errors("Hello there!", "hello out there") == (1, 2)
    rate = word_error_rate(
        ["My name is Ada and I live in Lisbon.", "What is my name?"],
        ["my name is eva and i live in is that", "why does my name"],
    )
    assert rate == pytest.approx((1 + 2 + 2) / (9 + 4))
    assert word_error_rate(["Hello there!"], ["hello there"]) == 0.0


def test_word_error_rate_refuses_unpaired_or_empty_input() -> None:
    with pytest.raises(ValueError, match="pair them"):
        word_error_rate(["a"], [])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["?"], ["x"])
