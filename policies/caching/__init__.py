"""policies/caching package."""
