"""mobilenet-classify: every photo in a folder classified, one row each, into a CSV or JSON
Lines file.

    mobilenet-classify PHOTOS_DIR --out results.csv [--model ID|NAME|FILE --labels FILE]
                       [--server URL] [--top-k 5] [--batch 8] [--concurrency 4]
                       [--retry-errors]

With --server the photos go to that server's API, several per call; without it, workers are
started here (MODEL_DIR, MODEL_STORE and the other settings as for the server). Rows already in
the output are skipped, so a run stopped with Ctrl-C goes on where it stopped; --retry-errors
classifies again the images whose rows are errors. An image that cannot be classified is a row
with its error; a file that cannot be read is left out; an error about the model or the server
stops the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from client.remote import RemoteClassifier, ServerError
from protocol import ServiceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


class Classifier(Protocol):
    def use_model(self, model: str | None, labels: Path | None) -> str: ...
    def classify(self, images: list[tuple[str, bytes]], top_k: int) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except OSError:
        return False


def find_images(folder: Path) -> tuple[list[str], int]:
    """Paths of the images under `folder` that can be read, relative to it, sorted; and how
    many image files could not be read (left out)."""
    found = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    readable = [p for p in found if _readable(p)]
    paths = sorted(path.relative_to(folder).as_posix() for path in readable)
    return paths, len(found) - len(readable)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """Text as a spreadsheet shows it and never runs it: a cell that starts like a formula
    (a label such as `=HYPERLINK(...)`, from a model's labels file) gets a leading quote."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def _is_error(row: dict[str, Any]) -> bool:
    return bool(row.get("error_code") or row.get("error"))


def _read_rows(out: Path) -> list[dict[str, Any]]:
    """The output's rows (a JSON Lines line cut short when a run stopped is left out)."""
    with out.open(newline="") as handle:
        if out.suffix == ".csv":
            return [
                {key: _uncell(value) if isinstance(value, str) else value
                 for key, value in row.items()}
                for row in csv.DictReader(handle)
            ]  # fmt: skip
        rows = []
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("path"):
                rows.append(row)
        return rows


def done_already(out: Path) -> set[str]:
    """The paths the output already has a row for."""
    if not out.exists():
        return set()
    return {row["path"] for row in _read_rows(out) if row.get("path")}


def drop_error_rows(out: Path) -> int:
    """Rewrite the output without its error rows (so those images are classified again);
    how many were dropped. The new file replaces the old one whole."""
    if not out.exists():
        return 0
    rows = _read_rows(out)
    kept = [row for row in rows if not _is_error(row)]
    fresh = out.with_name(out.name + ".partial")
    with fresh.open("w", newline="") as handle:
        if out.suffix == ".csv":
            with out.open(newline="") as existing:
                columns = next(csv.reader(existing), [])
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows({k: _cell(v) if isinstance(v, str) else v for k, v in row.items()}
                             for row in kept)  # fmt: skip
        else:
            handle.writelines(json.dumps(row) + "\n" for row in kept)
    os.replace(fresh, out)
    return len(rows) - len(kept)


class RowWriter:
    """Rows appended to a CSV (path, label_1, probability_1, …, error) or JSON Lines file."""

    def __init__(self, out: Path, top_k: int) -> None:
        self.csv = out.suffix == ".csv"
        fresh = not out.exists() or out.stat().st_size == 0
        # A line at a time: the rows written so far are on disk when the run is stopped or killed.
        self.handle = out.open("a", newline="", buffering=1)
        self.columns = ["path", "model"]
        for rank in range(1, top_k + 1):
            self.columns += [f"label_{rank}", f"probability_{rank}"]
        self.columns += ["error_code", "error"]
        if self.csv:
            if not fresh:
                with out.open(newline="") as existing:
                    header = next(csv.reader(existing), [])
                if header != self.columns:
                    raise SystemExit(
                        f"{out} has other columns ({len(header)}): use the same --top-k "
                        "as the run that wrote it, or another --out"
                    )
            self.writer = csv.DictWriter(self.handle, self.columns)
            if fresh:
                self.writer.writeheader()

    def write(self, path: str, model: str, answer: dict[str, Any]) -> None:
        if self.csv:
            row: dict[str, Any] = {"path": _cell(path), "model": _cell(model)}
            if "error" in answer:
                row["error_code"] = answer["error"]["code"]
                row["error"] = _cell(answer["error"]["message"])
            for rank, prediction in enumerate(answer.get("predictions", []), start=1):
                row[f"label_{rank}"] = _cell(prediction["label"])
                row[f"probability_{rank}"] = prediction["probability"]
            self.writer.writerow(row)
        else:
            entry: dict[str, Any] = {"path": path, "model": model}
            if "error" in answer:
                entry["error"] = answer["error"]
            else:
                entry["predictions"] = [
                    {"label": p["label"], "probability": p["probability"]}
                    for p in answer["predictions"]
                ]
            self.handle.write(json.dumps(entry) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _batches(paths: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def _read(folder: Path, batch: list[str]) -> list[tuple[str, bytes]]:
    return [(path, (folder / path).read_bytes()) for path in batch]


@contextmanager
def waiting(what: str) -> Iterator[None]:
    """A line on stderr saying what is under way and for how long, until it is done."""
    with tqdm(desc=what, bar_format="{desc}: {elapsed}", file=sys.stderr) as line:
        done = threading.Event()
        ticker = threading.Thread(target=lambda: _tick(line, done), daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _tick(line: tqdm, done: threading.Event) -> None:
    while not done.wait(0.25):
        line.refresh()


def run(args: argparse.Namespace, classifier: Classifier, model: str) -> dict[str, Any]:
    """Classifies what the output does not have yet; returns the summary. Rows are written as
    answers come, so a run stopped midway keeps what it did."""
    folder: Path = args.photos
    retried = drop_error_rows(args.out) if args.retry_errors else 0
    paths, unreadable = find_images(folder)
    done = done_already(args.out)
    todo = [p for p in paths if p not in done]
    writer = RowWriter(args.out, args.top_k)
    counts: Counter[str] = Counter()
    top_labels: Counter[str] = Counter()
    started = time.monotonic()
    # Not a `with`: on Ctrl-C its exit would wait for every call in flight.
    pool = ThreadPoolExecutor(args.concurrency)
    try:
        with tqdm(total=len(todo), unit="img", desc="classifying", file=sys.stderr) as progress:
            calls = pool.map(
                lambda batch: classifier.classify(_read(folder, batch), args.top_k),
                _batches(todo, args.batch),
            )
            for batch, answers in zip(_batches(todo, args.batch), calls, strict=True):
                for path, answer in zip(batch, answers, strict=True):
                    writer.write(path, model, answer)
                    if "error" in answer:
                        counts["errors"] += 1
                    else:
                        counts["classified"] += 1
                        top_labels[answer["predictions"][0]["label"]] += 1
                progress.update(len(batch))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        writer.close()
    seconds = time.monotonic() - started
    return {
        "images": len(paths),
        "unreadable": unreadable,
        "retried": retried,
        "skipped": len(paths) - len(todo),
        "classified": counts["classified"],
        "errors": counts["errors"],
        "seconds": round(seconds, 2),
        "images_per_second": round(len(todo) / seconds, 1) if seconds and todo else 0.0,
        "top_labels": top_labels.most_common(5),
        "out": str(args.out),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenet-classify", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("photos", type=Path, metavar="PHOTOS_DIR")
    parser.add_argument("--out", type=Path, required=True, help="results.csv or results.jsonl")
    parser.add_argument("--model", help="a registered model's id or name, or a model file")
    parser.add_argument("--labels", type=Path, help="the labels of a model file")
    parser.add_argument("--server", help="URL of a running server; without it, workers start here")
    parser.add_argument(
        "--token",
        default=os.environ.get("MOBILENET_TOKEN"),
        help="bearer token (default: $MOBILENET_TOKEN)",
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--concurrency", type=int, default=4, help="calls at once")
    parser.add_argument(
        "--retry-errors",
        action="store_true",
        help="classify again the images whose rows in --out are errors",
    )
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.photos.is_dir():
        parser.error(f"{args.photos} is not a folder")
    if args.out.suffix not in (".csv", ".jsonl"):
        parser.error("--out must end in .csv or .jsonl")
    if args.model and Path(args.model).is_file() and not args.labels:
        parser.error(f"{args.model} is a model file: give its labels with --labels")
    if args.labels and not args.labels.is_file():
        parser.error(f"{args.labels} is not a file")
    if not 1 <= args.top_k <= 100:
        parser.error("--top-k must be from 1 to 100")
    if args.batch < 1 or args.concurrency < 1:
        parser.error("--batch and --concurrency must be at least 1")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    classifier: Classifier | None = None
    try:
        with waiting("starting workers" if not args.server else f"connecting to {args.server}"):
            if args.server:
                classifier = RemoteClassifier(args.server, args.token)
            else:
                from client.local import LocalClassifier  # the service's own code: when needed

                classifier = LocalClassifier()
            model = classifier.use_model(args.model, args.labels)
        summary = run(args, classifier, model)
    except KeyboardInterrupt:
        # Every row written so far is in --out; calls in flight are dropped, not waited for.
        print("\nstopped; run again to continue", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    except (ServiceError, ServerError) as exc:
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        print(json.dumps({"error": message}), file=sys.stderr)
        return 1
    finally:
        if classifier is not None:
            classifier.close()
    left_out = summary["unreadable"]
    print(
        f"{summary['classified']} classified, {summary['errors']} errors, "
        f"{summary['skipped']} already in {summary['out']}, "
        + (f"{left_out} files that cannot be read left out, " if left_out else "")
        + f"{summary['seconds']} s ({summary['images_per_second']} images/s)",
        file=sys.stderr,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
