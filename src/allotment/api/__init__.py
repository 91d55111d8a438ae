"""The HTTP service (v1 API)."""

from allotment.api.app import build_app, create_app

__all__ = ["build_app", "create_app"]
