"""The local searchable log store (SQLite FTS5) and Loggator's documented search API over it."""
