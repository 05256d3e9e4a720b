"""The release, kept apart so any module can name it without importing the package's public API."""

__version__ = "0.1.0"
