"""The one error type the WAL raises."""


class WALError(OSError):
    """A WAL operation failed; ``errno`` carries the underlying OS error when there is one.

    A record whose append or sync raised this is not in the WAL (it was cut off), so the caller may
    answer its client with a retryable error.
    """
