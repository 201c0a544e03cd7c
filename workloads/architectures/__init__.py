"""workloads/architectures package."""
