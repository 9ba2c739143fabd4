"""Structured logs: one JSON object per line (or plain text for people at a terminal).

Call sites pass their data as `extra={"fields": {...}}`; request ids, peers, status codes and
timings go there, never image bytes. Both services (wildscreen-serve, wildscreen-review) configure
logging here, from the same `LogSettings` layer of their settings.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass

from server.settings import setting

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LogSettings:
    """The logging layer of a service's settings (--log-format, --log-level)."""

    log_format: str = setting("json or text", default="json")
    log_level: str = setting("DEBUG, INFO, WARNING or ERROR", default="INFO")

    def __post_init__(self) -> None:
        if self.log_format not in ("json", "text"):
            raise ValueError(f"log_format {self.log_format!r} is not json or text")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level {self.log_level!r} is not {', '.join(LOG_LEVELS)}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        return f"{text} {json.dumps(fields, default=str)}" if fields else text


def configure(settings: LogSettings) -> None:
    """One handler on the root logger, on stderr; libraries' loggers (uvicorn's too) propagate to it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
