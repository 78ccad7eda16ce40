"""Errors that reach the user as one line, without a traceback.

Anything raised as a ``GanrunError`` is printed by the CLI as
``ganrun: error: <message>`` with exit status 2. Messages say what is wrong and,
where there are choices, what would be right.
"""


class GanrunError(Exception):
    """A problem with the user's input (config, data, checkpoint)."""


class ConfigError(GanrunError):
    pass


class DataError(GanrunError):
    pass


class CheckpointError(GanrunError):
    pass
