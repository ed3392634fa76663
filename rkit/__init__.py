"""rkit."""
