"""uvicorn's h11 protocol with a header deadline: a connection must finish sending a
request's headers within ``MEMTYPE_HEADER_TIMEOUT`` seconds of opening (or of the previous
response), else it is closed.

Why: uvicorn's ``timeout_keep_alive`` starts only after a response and is cancelled by the
first byte that arrives, so a client that connects and sends nothing, or sends its headers
a byte at a time, holds the connection (and a file descriptor) for ever; a thousand of them
exhaust the process's descriptors. ``limit_concurrency`` answers 503 once too many
connections are open but does not close the idle ones. This deadline does.
(``h11_max_incomplete_event_size`` bounds how large the headers may grow meanwhile.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import get_settings


class GuardedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = get_settings().header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # no complete request in time: drop it quietly

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole request head has arrived
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()
