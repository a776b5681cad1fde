"""Admission: what a client may ask of the service before anything runs for it. Registrations
per client address and hour (counted in a file every gunicorn process shares), models other
than the default running at once per client, images per call, and the memory those images take
at the model's input size (checked from the model's description, before any is decoded)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from frontend.dataplane.fairness import FairTurns
from frontend.errors import (
    StoreUnavailable,
    TooManyDecodedPixels,
    TooManyDecodes,
    TooManyImages,
    TooManyRegistrations,
    TooManyUploads,
    TooMuchWork,
)
from frontend.images import check_pixels
from protocol import ServiceError


class RegistrationLog:
    """When each client registered within the last hour, in SQLite beside the store: shared by
    every gunicorn process (and every frontend on the same store), and bounded, since rows
    older than an hour are dropped and at most MAX_ROWS are kept."""

    MAX_ROWS = 100_000

    def __init__(self, path: Path) -> None:
        self.path = path

    def admit(self, client: str, limit: int, now: float) -> float | None:
        """Record a registration of `client` unless it has `limit` within the hour; None when
        recorded, else the seconds until the next one is allowed."""
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            db.execute("BEGIN IMMEDIATE")  # one process at a time decides
            db.execute(
                "CREATE TABLE IF NOT EXISTS registrations (client TEXT NOT NULL, at REAL NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS by_client ON registrations (client, at)")
            db.execute("DELETE FROM registrations WHERE at <= ?", (now - 3600,))
            recent = db.execute(
                "SELECT count(*), min(at) FROM registrations WHERE client = ?", (client,)
            ).fetchone()
            if recent[0] >= limit:
                return 3600 - (now - recent[1])
            db.execute("INSERT INTO registrations VALUES (?, ?)", (client, now))
            db.execute(
                "DELETE FROM registrations WHERE rowid <= "
                "(SELECT max(rowid) FROM registrations) - ?",
                (self.MAX_ROWS,),
            )
        return None


class Admission:
    def __init__(
        self,
        registrations_per_hour: int,
        uploads_per_client: int,
        images_per_call: int,
        registration_log: Path,
        decode_budgets: tuple[int, int] = (256_000_000, 256_000_000),
        work_per_client: int = 256,
        upload_turns: FairTurns | None = None,
    ):
        self.registrations_per_hour = registrations_per_hour
        self.uploads_per_client = uploads_per_client
        self.images_per_call = images_per_call
        self.decode_per_call, self.decode_per_client = decode_budgets
        self._decoding: Counter[str] = Counter()  # pixels being decoded, by client
        self.work_per_client = work_per_client
        self._working: Counter[str] = Counter()  # classifications running, by client
        self._lock = threading.Lock()
        self._registrations = RegistrationLog(registration_log)
        self._running: Counter[str] = Counter()  # models other than the default, by client
        self.upload_turns = upload_turns or FairTurns(1_000_000, 3600.0)

    def registration(self, client: str) -> None:
        """At most REGISTRATIONS_PER_HOUR registration requests per client address and hour,
        across all gunicorn processes: padding a model gives a new one, each probed and
        stored."""
        limit = self.registrations_per_hour
        try:
            wait = self._registrations.admit(client, limit, time.time())
        except sqlite3.Error as exc:
            why = str(exc)
            try:  # SQLite says "unable to open"; the file system says why
                self._registrations.path.touch()
            except OSError as cause:
                why = f"{cause.strerror}: {cause.filename}"
            raise StoreUnavailable(f"the store cannot count registrations: {why}") from None
        if wait is not None:
            raise TooManyRegistrations(
                f"{limit} registrations from this client within the hour "
                f"(REGISTRATIONS_PER_HOUR); the next one in {wait:.0f} s"
            )

    @contextmanager
    def running(self, client: str) -> Iterator[None]:
        """At most UPLOADS_PER_CLIENT models other than the default run for one client at once
        (in this gunicorn process): one client cannot queue up the upload workers for all; and
        they take their turns at the upload lane fairly among clients (fairness.py)."""
        with self._lock:
            if self._running[client] >= self.uploads_per_client:
                raise TooManyUploads(
                    f"{self.uploads_per_client} of this client's uploaded or registered models "
                    "are already running; wait for one to finish (UPLOADS_PER_CLIENT)"
                )
            self._running[client] += 1
        try:
            with self.upload_turns.turn(client):
                yield
        finally:
            with self._lock:
                self._running[client] -= 1
                if not self._running[client]:
                    del self._running[client]

    @contextmanager
    def decoding(self, client: str, pixels: int) -> Iterator[None]:
        """A call's images decode to at most DECODE_PIXELS_PER_CALL pixels, and one client's
        calls decode at most DECODE_PIXELS_PER_CLIENT at once (a first call always may): so a
        few bytes of lossless WebP cannot buy seconds of everyone's decoding."""
        if pixels > self.decode_per_call:
            raise TooManyDecodedPixels(
                f"the images would decode to {pixels} pixels, over the {self.decode_per_call} "
                "a call may (DECODE_PIXELS_PER_CALL); send fewer or smaller images"
            )

        def refusal(busy: int) -> ServiceError:
            return TooManyDecodes(
                f"this client's calls are already decoding {busy} pixels "
                "(DECODE_PIXELS_PER_CLIENT); wait for them to finish"
            )

        with self._share(self._decoding, client, pixels, self.decode_per_client, refusal):
            yield

    def working(self, client: str, classifications: int) -> AbstractContextManager[None]:
        """One client's calls run at most WORK_PER_CLIENT classifications at once (an
        explanation counts 1 + grid²; a first call always may): one client's loops cannot
        queue everyone else behind them in the model lanes."""

        def refusal(busy: int) -> ServiceError:
            return TooMuchWork(
                f"this client's calls already run {busy} classifications (WORK_PER_CLIENT; an "
                "explanation counts 1 + grid²); wait for them to finish"
            )

        return self._share(self._working, client, classifications, self.work_per_client, refusal)

    @contextmanager
    def _share(
        self,
        held: Counter[str],
        client: str,
        amount: int,
        limit: int,
        refusal: Callable[[int], ServiceError],
    ) -> Iterator[None]:
        """`amount` more of what `held` counts for `client`, within `limit` unless it holds
        none yet; over it, `refusal(what it holds)` is raised."""
        with self._lock:
            busy = held[client]
            if busy and busy + amount > limit:
                raise refusal(busy)
            held[client] += amount
        try:
            yield
        finally:
            with self._lock:
                held[client] -= amount
                if not held[client]:
                    del held[client]

    def pixels(self, count: int, size: tuple[int, int], what: str = "one call") -> None:
        """The images of a call fit in memory at the model's input size (check_pixels)."""
        check_pixels(count, size, what)

    def count(self, count: int, what: str = "one call") -> None:
        """At most MAX_IMAGES_PER_CALL images (or classifications) in one call."""
        if count > self.images_per_call:
            raise TooManyImages(
                f"{count} images in {what}, over the limit of {self.images_per_call} "
                "(MAX_IMAGES_PER_CALL)"
            )
