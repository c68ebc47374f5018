"""A guard that fails a test when anything holds the event loop too long.

asyncio's debug mode times every callback and logs those slower than
``slow_callback_duration``; the guard collects those lines. CPU-bound work
(feed parsing, extraction) belongs in worker processes, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType


class LoopGuard(logging.Handler):
    def __init__(self, threshold_s: float) -> None:
        super().__init__(logging.WARNING)
        self.threshold_s = threshold_s
        self.slow: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.slow.append(message)

    def __enter__(self) -> LoopGuard:
        loop = asyncio.get_running_loop()
        self._was = loop.get_debug(), loop.slow_callback_duration
        loop.set_debug(True)
        loop.slow_callback_duration = self.threshold_s
        logging.getLogger("asyncio").addHandler(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        logging.getLogger("asyncio").removeHandler(self)
        loop = asyncio.get_running_loop()
        loop.set_debug(self._was[0])
        loop.slow_callback_duration = self._was[1]
