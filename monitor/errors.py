"""The exceptions feed-monitor raises, and the context each carries.

    MonitorError
    ├── ConfigError          a config or rule file is invalid (file:line: key: reason)
    ├── FetchError           one feed or page could not be fetched (kind, url)
    ├── FeedParseError       bytes that are not a usable feed (kind, url)
    ├── ExtractionError      a page body could not be extracted (url, reason)
    ├── HubError             a WebSub hub refused or did not answer a request (kind, url)
    └── RedisUnavailable     the Redis server cannot be reached (url)

Third-party exceptions (aiohttp, redis, yaml, pydantic) are translated into
these at the one module that talks to that library; everything above that
module sees only ours.
"""

from __future__ import annotations

from dataclasses import dataclass


class MonitorError(Exception):
    """Base of every error feed-monitor raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config or rule file, located for the user."""

    file: str
    line: int | None
    column: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(MonitorError):
    """A config or rule file cannot be used; lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[Problem]]]:
        return (type(self), (self.problems,))


class _KindError(MonitorError):
    """A failure with a stable ``kind`` label, about one URL."""

    def __init__(self, kind: str, url: str, detail: str) -> None:
        self.kind = kind
        self.url = url
        self.detail = detail
        super().__init__(f"{kind}: {url}: {detail}")

    # Raised in worker processes too: pickle the fields, not the message.
    def __reduce__(self) -> tuple[type[_KindError], tuple[str, str, str]]:
        return (type(self), (self.kind, self.url, self.detail))


class FetchError(_KindError):
    """A fetch failed; ``kind`` is timeout, dns, connect, tls, http_404, too_large, ...

    ``headers`` holds the response headers the scheduler reads (Retry-After).
    """

    headers: dict[str, str] = {}  # noqa: RUF012 - replaced per instance, never mutated


class FeedParseError(_KindError):
    """The bytes are not a feed we can use (``not_a_feed``, ``parse_error``)."""


class HubError(_KindError):
    """A WebSub hub did not accept a (un)subscription request (``http_500``, ``connect``, ...)."""


class ExtractionError(MonitorError):
    """The article body could not be extracted from a page."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")

    def __reduce__(self) -> tuple[type[ExtractionError], tuple[str, str]]:
        return (type(self), (self.url, self.reason))


class RedisUnavailable(MonitorError):
    """Redis could not be reached or refused a command."""

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        self.detail = detail
        super().__init__(f"Redis at {where} unavailable: {detail}")

    def __reduce__(self) -> tuple[type[RedisUnavailable], tuple[str, str]]:
        return (type(self), (self.where, self.detail))
