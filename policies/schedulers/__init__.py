"""policies/schedulers package."""
