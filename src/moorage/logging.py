"""structlog set-up: console for people, JSON lines for log shippers (``log.format``)."""

from __future__ import annotations

import logging

import structlog

from moorage.config import LogSettings

__all__ = ["configure_logging"]


def configure_logging(settings: LogSettings) -> None:
    level = getattr(logging, settings.level.upper())
    # JSON: the traceback of an ``exc_info`` event becomes its "exception" field, so it stays one
    # line; the console renderer formats exceptions itself (and warns if they were formatted before).
    renderers: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if settings.format == "json"
        else [structlog.dev.ConsoleRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, format="%(message)s")
