"""The journal (SQLite): the single source of truth for what happened and what is desired."""

from gateway.store.journal import SCHEMA_VERSION, Journal, JournalReader, migrate

__all__ = ["Journal", "JournalReader", "SCHEMA_VERSION", "migrate"]
