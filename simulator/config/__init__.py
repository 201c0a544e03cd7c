"""Bottom layer: strict, frozen scenario models, quantity types, presets and overrides."""
