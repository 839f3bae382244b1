"""Exception types. Every user-facing error carries a one-line message naming the bad input."""


class RBNLPError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with status 2."""


class ConfigError(RBNLPError, ValueError):
    """An invalid option or hyperparameter (unknown key, wrong type, out of range)."""


class DataError(RBNLPError, ValueError):
    """A data file or directory is missing or malformed."""


class UnknownNameError(RBNLPError, KeyError):
    """An unknown defense / attack / task / backbone name; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
