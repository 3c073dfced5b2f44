"""scraping-service: a clustered telemetry agent compatible with Grafana Agent's scraping-service mode."""

__version__ = "0.1.0"
