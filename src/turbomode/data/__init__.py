"""Market data: sources, validation, the universe and the clean store."""
