"""Metrics: instance configs, instances, WAL-backed remote_write, the remote_write receiver, scraping."""
