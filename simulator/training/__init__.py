"""Training steps on the serving engine's hardware models, timing backends, model presets and links:
``config`` (the ``type: training`` scenario), ``schedule`` (1F1B / interleaved pipelines as SimPy
processes), ``memory`` (weights, gradients, optimizer state, activations per GPU), ``step`` (a step
from a scenario) and ``outputs`` (summary, Chrome trace, report)."""
