"""Records for the log files only (a job's train.log), not the console."""

from __future__ import annotations

import logging


def to_log_files(level: int, msg: str, *args, logger: str = "ganrun") -> None:
    """Hand one record to the root logger's file handlers (Hydra's train.log): for
    what the console already shows another way (the one-line error on stderr, the
    progress bar's losses)."""
    source = logging.getLogger(logger)
    record = source.makeRecord(source.name, level, __file__, 0, msg, args, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)
