"""Label lookup and the answer's confidence word."""

from __future__ import annotations

import pytest

from frontend.answers import confidence_word, top_predictions
from frontend.errors import InvalidLabels, LabelsMismatch
from frontend.labels import align_labels, parse_labels


def test_parse_ignores_trailing_blank_lines_and_bom() -> None:
    assert parse_labels("\ufeffa\nb\n\n\n".encode()) == ["a", "b"]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xff\xfe\x00"])
def test_parse_refuses_empty_or_binary(data: bytes) -> None:
    with pytest.raises(InvalidLabels):
        parse_labels(data)


@pytest.mark.parametrize(
    "text, labels",
    [
        ("0 FRESH APPLE\n1 ROTTEN APPLE\n", ["FRESH APPLE", "ROTTEN APPLE"]),  # Teachable Machine
        ("0:background\n1:tench, Tinca tinca\n2:goldfish, Carassius auratus\n",  # TF-slim
         ["background", "tench, Tinca tinca", "goldfish, Carassius auratus"]),
        ("0: Ara macao\n1: Aix sponsa\n", ["Ara macao", "Aix sponsa"]),  # Coral, with a space
        ("1 tench\n2 goldfish\n", ["tench", "goldfish"]),  # numbered from 1, no background line
        ("  0  padded\r\n1\tTabbed label\r\n", ["padded", "Tabbed label"]),
    ],
)  # fmt: skip
def test_numbered_labels_lose_their_numbers(text: str, labels: list[str]) -> None:
    assert parse_labels(text.encode()) == labels


@pytest.mark.parametrize(
    "text",
    [
        "7up\ncola\n",  # a number only in some lines belongs to the label
        "3 musketeers\n4 seasons\n",  # numbered, but not from 0 or 1
        "0 a\n2 b\n",  # not in order: the numbers are not the indices
        "0\n1\n2\n",  # numbers alone are the labels
    ],
)
def test_labels_that_only_look_numbered_stay_as_written(text: str) -> None:
    assert parse_labels(text.encode()) == [line.strip() for line in text.splitlines()]


def test_numbered_labels_line_up_with_and_without_background() -> None:
    slim = parse_labels(b"0:background\n1:tench\n2:goldfish\n")
    assert align_labels(slim, 2).names == ("tench", "goldfish")
    coral = parse_labels(b"0  background\n1  tench\n2  goldfish\n")
    assert align_labels(coral, 2).names == ("tench", "goldfish")
    teachable = parse_labels(b"0 cat\n1 dog\n")
    assert align_labels(teachable, 2).names == ("cat", "dog")


@pytest.mark.parametrize("first", ["background", "???", "unused", "__background__", "0 background"])
def test_one_line_more_is_dropped_only_when_it_is_a_background_entry(first: str) -> None:
    extra = align_labels([first, "a", "b"], 2)
    assert extra.names == ("a", "b") and extra.alignment == "dropped_first_line"
    assert "background entry" in (extra.note or "")


@pytest.mark.parametrize(
    "lines, classes, advice",
    [
        (["cat", "dog", "bird"], 2, "its first line 'cat' is no background entry"),  # TM, one off
        (["a", "b"], 3, "add the labels of the 1 outputs it lacks"),
        (list("abcde"), 6, "add the labels of the 1 outputs it lacks"),  # a fresh apple: shifted
        (list("abcde"), 3, "remove the 2 lines"),
    ],
)
def test_labels_that_would_shift_the_answers_are_refused(
    lines: list[str], classes: int, advice: str
) -> None:
    with pytest.raises(LabelsMismatch) as refused:
        align_labels(lines, classes)
    assert f"{len(lines)} lines but the model has {classes} outputs" in refused.value.message
    assert advice in refused.value.message


def test_a_model_stored_one_line_short_keeps_answering_as_it_did() -> None:
    kept = align_labels(["a", "b"], 3, stored_as="added_background")
    assert kept.names == ("background", "a", "b") and kept.alignment == "added_background"


def test_alignment() -> None:
    assert align_labels(["a", "b", "c"], 3).alignment == "exact"


@pytest.mark.parametrize(
    "probability, word",
    [
        (0.9, "very high"),
        (0.75, "high"),
        (0.51, "high"),
        (0.5, "medium"),
        (0.21, "medium"),
        (0.2, "low"),
        (0.01, "low"),
    ],
)
def test_confidence_words_are_the_seeds(probability: float, word: str) -> None:
    assert confidence_word(probability) == word


def test_top_predictions_best_first() -> None:
    labels = align_labels(["a", "b", "c"], 3)
    top = top_predictions([0.2, 0.7, 0.1], labels, 2)
    assert [(p.label, p.index) for p in top] == [("b", 1), ("a", 0)]
