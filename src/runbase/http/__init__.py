"""The HTTP API: FastAPI app factory, dependencies, error envelope and routes."""

from runbase.http.app import create_app

__all__ = ["create_app"]
