"""One module per kind. Each has a pure `desired_status(body, registry)` and its kopf handlers.

Importing this package registers every handler with kopf.
"""

from lykeion.handlers import deployments, families, features, models

__all__ = ["deployments", "families", "features", "models"]
