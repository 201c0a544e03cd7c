"""hw_models package."""
