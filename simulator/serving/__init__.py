"""simulator/serving package."""
