"""The one label lookup: parse a labels file and line it up with a model's outputs.

Labels files come in a few shapes, all read here: one label a line; numbered lines as Teachable
Machine writes them (`0 FRESH APPLE`) and as TF-slim and Coral write them (`2:goldfish,
Carassius auratus`, `2: goldfish`); with or without a first line for a background class. When
every line is numbered in order (from 0 or 1, each number one more than the last) the numbers
are taken off, so answers show the bare label; where only some lines start with a number, the
numbers are part of the labels (`7up`, `3 musketeers`) and stay.

A file lines up with a model when it has one label per output, or one more whose first line is
a background entry (`background`, `???`, `unused`…, which TF-slim's and Coral's files put before
their classes): that line is dropped. Anything else would shift every answer by a class, so it
is refused, naming both counts and what to change."""

from __future__ import annotations

import re
from dataclasses import dataclass

from frontend.errors import InvalidField, InvalidLabels, LabelsMismatch

MAX_LABELS = 100_000


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]
    # "exact", "dropped_first_line", or "added_background" (only in stores written before
    # a file one line short was refused: such a model keeps answering as it did)
    alignment: str

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
            "outputs; its first line, a background entry, was dropped",
            "added_background": "the labels file has one line fewer than the model has "
            "outputs; output 0 was taken as 'background'",
        }[self.alignment]


# `N label`, `N:label` or `N: label`; a number alone on its line is no numbered label.
NUMBERED = re.compile(r"(\d+)(?::\s*|\s+)(\S.*)")
# The first line of a file whose model has no output for it: a background or unused class.
BACKGROUND = re.compile(
    r"(?:\d+\s*[:\s]\s*)?(?:background|__background__|\?\?\?|unused|dummy|none)", re.IGNORECASE
)


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


def align_labels(lines: list[str], classes: int, stored_as: str | None = None) -> Labels:
    """Labels indexed like the model's outputs: as many, or one more whose first line is a
    background entry (dropped); anything else is LabelsMismatch, saying what to change.
    `stored_as`: the alignment a stored model was registered with."""
    if stored_as == "added_background" and len(lines) == classes - 1:
        return Labels(("background", *lines), stored_as)
    if len(lines) == classes:
        return Labels(tuple(lines), "exact")
    if len(lines) == classes + 1 and BACKGROUND.fullmatch(lines[0]):
        return Labels(tuple(lines[1:]), "dropped_first_line")
    if len(lines) == classes + 1:
        advice = (
            f"its first line {lines[0]!r:.60} is no background entry, so the extra line is "
            f"not known to be the one to drop: give exactly {classes} labels"
        )
    elif len(lines) < classes:
        advice = (
            f"add the labels of the {classes - len(lines)} outputs it lacks ({classes} lines, "
            "one per output, in the model's order)"
        )
    else:
        advice = f"remove the {len(lines) - classes} lines for outputs the model does not have"
    raise LabelsMismatch(
        f"the labels file has {len(lines)} lines but the model has {classes} outputs: {advice}"
    )
