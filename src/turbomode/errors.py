"""Errors that name the problem, so a user can fix the input rather than read a traceback."""

from __future__ import annotations


class TurboModeError(Exception):
    """Base class for every error the platform raises on purpose."""


class SchemaError(TurboModeError):
    """A frame lacks required columns or has columns of the wrong kind."""


class UnknownSymbolError(TurboModeError, KeyError):
    """One or more symbols are not in the universe."""

    def __init__(self, symbols: list[str], where: str = "the universe") -> None:
        self.symbols = sorted(symbols)
        shown = ", ".join(self.symbols[:20]) + (" …" if len(self.symbols) > 20 else "")
        super().__init__(f"{len(self.symbols)} unknown symbol(s) not in {where}: {shown}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class UnknownSectorError(TurboModeError, ValueError):
    """A sector name that is not one of the 11 GICS sectors."""


class SourceError(TurboModeError):
    """A market data source could not deliver what was asked."""


class UnreadableFileError(TurboModeError):
    """A file that exists but cannot be read as the table it should be (empty, binary,
    corrupt); the message names the file, which the parsers' own errors do not."""
