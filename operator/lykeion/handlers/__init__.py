"""One module per kind. Each has a pure `desired_status(body, registry)` and its kopf handlers.

Importing this package registers every handler with kopf but the timers, whose interval
is configuration: `register_timers(config.poll_seconds)`, once, from the operator's `main()`.
"""

from lykeion.handlers import deployments, families, features, models

__all__ = ["deployments", "families", "features", "models", "register_timers"]


def register_timers(poll_seconds: float) -> None:
    """Register the polling timers of every kind, every `poll_seconds` seconds."""
    features.register_timers(poll_seconds)
    models.register_timers(poll_seconds)
    deployments.register_timers(poll_seconds)
