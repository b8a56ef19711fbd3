"""Arbiter: a decision API for order operations."""

__version__ = "0.1.0"
