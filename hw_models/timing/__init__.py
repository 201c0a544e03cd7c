"""hw_models/timing package."""
