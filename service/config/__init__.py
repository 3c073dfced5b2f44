"""Config schema machinery shared by the node file (agent.yaml) and instance configs, and the settings
both metrics and logs configs embed (`http_client`: Prometheus' inline HTTP client block)."""
