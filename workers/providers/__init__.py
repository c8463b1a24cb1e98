"""Market-data providers."""
