"""File tailing with Promtail semantics: globbed targets, saved positions, rotation and truncation."""
