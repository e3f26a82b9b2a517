"""Lykeion: Machine Learning as a Service on Kubernetes."""

GROUP = "lykeion.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "lykeion"
