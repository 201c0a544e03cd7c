"""workloads/sources package."""
