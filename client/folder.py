"""mobilenet-classify: every photo in a folder classified, one row each, into a CSV or JSON
Lines file.

    mobilenet-classify PHOTOS_DIR --out results.csv [--model ID|FILE --labels FILE]
                       [--server URL] [--top-k 5] [--batch 8] [--concurrency 4]

With --server the photos go to that server's API, several per call; without it, workers are
started here (MODEL_DIR, MODEL_STORE and the other settings as for the server). Rows already in
the output are skipped, so an interrupted run goes on where it stopped. An image that cannot be
classified is a row with its error; an error about the model or the server stops the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


def find_images(folder: Path) -> list[str]:
    """Paths of the images under `folder`, relative to it, sorted."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


def done_already(out: Path) -> set[str]:
    """The paths the output already has a row for."""
    if not out.exists():
        return set()
    with out.open(newline="") as handle:
        if out.suffix == ".csv":
            return {row["path"] for row in csv.DictReader(handle) if row.get("path")}
        done = set()
        for line in handle:
            try:
                done.add(json.loads(line)["path"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short when the last run stopped: classified again
        return done


class RowWriter:
    """Rows appended to a CSV (path, label_1, probability_1, …, error) or JSON Lines file."""

    def __init__(self, out: Path, top_k: int) -> None:
        self.csv = out.suffix == ".csv"
        fresh = not out.exists() or out.stat().st_size == 0
        self.handle = out.open("a", newline="")
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
            row: dict[str, Any] = {"path": path, "model": model}
            if "error" in answer:
                row["error_code"] = answer["error"]["code"]
                row["error"] = answer["error"]["message"]
            for rank, prediction in enumerate(answer.get("predictions", []), start=1):
                row[f"label_{rank}"] = prediction["label"]
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


def run(args: argparse.Namespace, classifier: Classifier) -> dict[str, Any]:
    """Classifies what the output does not have yet; returns the summary."""
    folder: Path = args.photos
    paths = find_images(folder)
    done = done_already(args.out)
    todo = [p for p in paths if p not in done]
    model = classifier.use_model(args.model, args.labels)
    writer = RowWriter(args.out, args.top_k)
    counts: Counter[str] = Counter()
    top_labels: Counter[str] = Counter()
    started = time.monotonic()
    try:
        with (
            ThreadPoolExecutor(args.concurrency) as pool,
            tqdm(total=len(todo), unit="img", desc="classifying", file=sys.stderr) as progress,
        ):
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
        writer.close()
    seconds = time.monotonic() - started
    return {
        "images": len(paths),
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
    parser.add_argument("--model", help="a registered model's id, or a model file")
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
    if args.server:
        classifier: Classifier = RemoteClassifier(args.server, args.token)
    else:
        from client.local import LocalClassifier  # the service's own code: only when needed

        classifier = LocalClassifier()
    try:
        summary = run(args, classifier)
    except (ServiceError, ServerError) as exc:
        message = exc.message if isinstance(exc, ServiceError) else str(exc)
        print(json.dumps({"error": message}), file=sys.stderr)
        return 1
    finally:
        classifier.close()
    print(
        f"{summary['classified']} classified, {summary['errors']} errors, "
        f"{summary['skipped']} already in {summary['out']}, "
        f"{summary['seconds']} s ({summary['images_per_second']} images/s)",
        file=sys.stderr,
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
