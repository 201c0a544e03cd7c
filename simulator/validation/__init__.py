"""Validation of the timing backends against measured kernel tables (Vidur format)."""
