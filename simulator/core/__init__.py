"""Bottom layer: clock, units, randomness, registry, events, resources and policy contracts.

Nothing in ``simulator.core`` imports any other hwsim package.
"""
