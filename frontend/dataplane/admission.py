"""Admission: what a client may ask of the service before anything runs for it. Registrations
per client address and hour, models other than the default running at once per client, and
images per call."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from frontend.errors import TooManyImages, TooManyRegistrations, TooManyUploads


class Admission:
    def __init__(self, registrations_per_hour: int, uploads_per_client: int, images_per_call: int):
        self.registrations_per_hour = registrations_per_hour
        self.uploads_per_client = uploads_per_client
        self.images_per_call = images_per_call
        self._lock = threading.Lock()
        self._registrations: defaultdict[str, deque[float]] = defaultdict(deque)
        self._running: Counter[str] = Counter()  # models other than the default, by client

    def registration(self, client: str) -> None:
        """At most REGISTRATIONS_PER_HOUR registration requests per client address and hour
        (in this gunicorn process): padding a model gives a new one, each probed and stored."""
        limit, now = self.registrations_per_hour, time.monotonic()
        with self._lock:
            recent = self._registrations[client]
            while recent and recent[0] <= now - 3600:
                recent.popleft()
            if len(recent) >= limit:
                wait = 3600 - (now - recent[0])
                raise TooManyRegistrations(
                    f"{limit} registrations from this client within the hour "
                    f"(REGISTRATIONS_PER_HOUR); the next one in {wait:.0f} s"
                )
            recent.append(now)

    @contextmanager
    def running(self, client: str) -> Iterator[None]:
        """At most UPLOADS_PER_CLIENT models other than the default run for one client at once
        (in this gunicorn process): one client cannot queue up the upload workers for all."""
        with self._lock:
            if self._running[client] >= self.uploads_per_client:
                raise TooManyUploads(
                    f"{self.uploads_per_client} of this client's uploaded or registered models "
                    "are already running; wait for one to finish (UPLOADS_PER_CLIENT)"
                )
            self._running[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running[client] -= 1
                if not self._running[client]:
                    del self._running[client]

    def count(self, count: int, what: str = "one call") -> None:
        """At most MAX_IMAGES_PER_CALL images (or classifications) in one call."""
        if count > self.images_per_call:
            raise TooManyImages(
                f"{count} images in {what}, over the limit of {self.images_per_call} "
                "(MAX_IMAGES_PER_CALL)"
            )
