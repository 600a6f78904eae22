"""The scraper: source reflection, the pure sampling core, aggregation, and the daemon shell."""
