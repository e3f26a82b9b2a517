"""Kept so that existing imports keep working: see `lykeion.local.tracking_server`."""

from lykeion.local.tracking_server import TrackingServer

__all__ = ["TrackingServer"]
