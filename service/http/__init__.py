"""Shared HTTP pieces: response envelopes, body limits, access logging."""
