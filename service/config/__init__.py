"""Config schema machinery shared by the node file (agent.yaml) and instance configs."""
