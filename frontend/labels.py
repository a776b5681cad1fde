"""The one label lookup: parse a labels file and line it up with a model's outputs.

Labels files come in a few shapes, all read here: one label a line; numbered lines as Teachable
Machine writes them (`0 FRESH APPLE`) and as TF-slim and Coral write them (`2:goldfish,
Carassius auratus`, `2: goldfish`); with or without a first line for a background class. When
every line is numbered in order (from 0 or 1, each number one more than the last) the numbers
are taken off, so answers show the bare label; where only some lines start with a number, the
numbers are part of the labels (`7up`, `3 musketeers`) and stay."""

from __future__ import annotations

import re
from dataclasses import dataclass

from frontend.errors import InvalidField, InvalidLabels, LabelsMismatch

MAX_LABELS = 100_000


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]
    alignment: str  # "exact", "dropped_first_line" or "added_background"

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def index_of(self, label: str) -> int:
        """The class of a label as answers show it, or of a class number."""
        if label.isdigit() and int(label) < len(self.names):
            return int(label)
        try:
            return self.names.index(label)
        except ValueError:
            raise InvalidField(
                f"no class {label!r:.80} in this model's {len(self.names)} labels"
            ) from None

    @property
    def note(self) -> str | None:
        return {
            "exact": None,
            "dropped_first_line": "the labels file has one line more than the model has "
            "outputs; its first line was dropped",
            "added_background": "the labels file has one line fewer than the model has "
            "outputs; output 0 was taken as 'background'",
        }[self.alignment]


# `N label`, `N:label` or `N: label`; a number alone on its line is no numbered label.
NUMBERED = re.compile(r"(\d+)(?::\s*|\s+)(\S.*)")


def _without_numbers(lines: list[str]) -> list[str]:
    """The labels without their numbers when every line is numbered in order, else as given."""
    matches = [NUMBERED.fullmatch(line) for line in lines]
    if not all(matches):
        return lines
    numbers = [int(m.group(1)) for m in matches if m]
    if numbers[0] not in (0, 1) or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return lines
    return [m.group(2).strip() for m in matches if m]


def parse_labels(data: bytes) -> list[str]:
    """One label per line, UTF-8, with the numbers of a numbered file taken off (above);
    trailing blank lines ignored."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidLabels(f"the labels file is not UTF-8 text: {exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InvalidLabels("the labels file is empty")
    if len(lines) > MAX_LABELS:
        raise InvalidLabels(f"the labels file has {len(lines)} lines, over {MAX_LABELS}")
    return _without_numbers(lines)


def align_labels(lines: list[str], classes: int) -> Labels:
    """Labels indexed like the model's outputs. One line more or fewer is the common
    'background' convention and is lined up; any other difference is an error."""
    if len(lines) == classes:
        return Labels(tuple(lines), "exact")
    if len(lines) == classes + 1:
        return Labels(tuple(lines[1:]), "dropped_first_line")
    if len(lines) == classes - 1:
        return Labels(("background", *lines), "added_background")
    raise LabelsMismatch(
        f"the labels file has {len(lines)} lines but the model has {classes} outputs"
    )
