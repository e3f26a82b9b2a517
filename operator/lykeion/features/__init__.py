"""The feature platform: one definition (the FeatureManifest) feeding training and serving."""
