"""policies/routers package."""
