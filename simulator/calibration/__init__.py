"""Calibration: capture real kernel timings, fit hardware models, report prediction error."""
