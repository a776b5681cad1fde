"""Turns at a small shared resource, taken fairly among clients: the upload lane has one worker
by default, and whoever has waited for it without a turn goes before a client that just had
one, whatever the order of arrival. So two heavy uploads of one client cannot put a third
client's request behind both of them: it waits for one frame at most."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from frontend.settings import Settings
from protocol import Overloaded


class FairTurns:
    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self._changed = threading.Condition()
        self._running = 0
        self._waiting: dict[int, tuple[float, int]] = {}  # ticket: (client's last turn, ticket)
        self._last_turn: dict[str, float] = {}  # by client; the oldest dropped past 10 000
        self._tickets = itertools.count()

    @contextmanager
    def turn(self, client: str) -> Iterator[None]:
        """Run when the capacity has room and no waiting client had its last turn before this
        one's (ties: first come); Overloaded after `wait_seconds`."""
        ticket = next(self._tickets)
        deadline = time.monotonic() + self.wait_seconds
        with self._changed:
            self._waiting[ticket] = (self._last_turn.get(client, float("-inf")), ticket)
            try:
                while self._running >= self.capacity or min(self._waiting.values())[1] != ticket:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Overloaded(
                            f"the upload lane was busy with other clients' models for "
                            f"{self.wait_seconds:g} s"
                        )
                    self._changed.wait(remaining)
            finally:
                del self._waiting[ticket]
                self._changed.notify_all()
            self._running += 1
            self._last_turn.pop(client, None)
            self._last_turn[client] = time.monotonic()
            if len(self._last_turn) > 10_000:
                del self._last_turn[next(iter(self._last_turn))]
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


def upload_turns(settings: Settings) -> FairTurns:
    """Turns for the upload lane's workers; a frame carries up to BATCH_MAX_SIZE calls' images,
    so that many calls share one worker at once."""
    return FairTurns(
        settings.upload_pool_size * settings.batch_max_size, 2 * settings.upload_timeout
    )
