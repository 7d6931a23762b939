"""Orchard: the lifecycle platform for consumer-credit risk models."""

__version__ = "0.1.0"
