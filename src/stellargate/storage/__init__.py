"""Persistence: keys, the usage ledger and (later) the audit log, over SQLite or PostgreSQL."""
