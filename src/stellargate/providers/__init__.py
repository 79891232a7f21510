"""Outbound adapters: canonical model <-> each provider's wire. Pure: no I/O here."""
