"""runbase: a self-hostable server for the Runbase runs API for AI video generation."""

__version__ = "0.1.0"
