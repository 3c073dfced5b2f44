"""Config management API over the KV store."""
