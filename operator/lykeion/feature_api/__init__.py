"""The Feature API: online features over GraphQL, and the feature catalog, for other teams.

`create_app(store, served_views, catalog)` is the ASGI app; `ServedViews.update(views)`
swaps the schema while it serves; `loader.ClusterLoader` keeps it in step with the
cluster's FeatureManifests; `python -m lykeion.feature_api --help` runs it.
"""

from lykeion.feature_api.app import create_app
from lykeion.feature_api.limits import Limits
from lykeion.feature_api.served_views import ServedViews

__all__ = ["Limits", "ServedViews", "create_app"]
