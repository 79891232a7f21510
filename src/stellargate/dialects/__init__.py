"""Inbound dialects: each client API's wire <-> the canonical model."""
