"""Training: a Model resource becomes a registered, evaluated, reproducible MLflow model."""
