"""POST /api/chat: answers grounded in tool calls over the log store (OpenAI-compatible or offline)."""
