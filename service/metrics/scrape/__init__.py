"""Scraping: parser, scrape cache, per-target loops, per-config pools, the per-instance manager."""
