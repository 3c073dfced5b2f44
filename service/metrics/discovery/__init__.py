"""Service discovery: static, file, http and dns providers, and a manager per scrape config."""
