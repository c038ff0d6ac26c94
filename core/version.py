"""The service's version, reported by ``/version`` and ``/about``."""

__version__ = "0.1.0"
