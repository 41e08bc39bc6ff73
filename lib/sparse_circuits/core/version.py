"""The package version, recorded in every saved model and circuit."""

__version__ = "0.1.0"
