"""Shared test machinery: peers, node processes, payloads, polling. No tests live here."""
