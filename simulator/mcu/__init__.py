"""Microcontroller runs: memory planning, patch-based execution, scenario runner and CLI."""
