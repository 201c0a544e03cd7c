"""policies/quantization package."""
