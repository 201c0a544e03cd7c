"""hwsim: a discrete-event simulator of ML hardware and the software that schedules work on it."""

__version__ = "0.1.0"
