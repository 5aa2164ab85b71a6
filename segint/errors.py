"""Errors that the CLI turns into exit code 2 and one line on stderr."""


class SegintError(Exception):
    """A user-facing error: bad input file, bad option, missing artifact."""


class DataError(SegintError):
    """A malformed input file; the message names the file, row and column."""
