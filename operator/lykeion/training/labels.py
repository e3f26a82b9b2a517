"""Moved to `lykeion.evaluation.labels` (the training and the model server read labels
alike). Kept for serving/outcomes.py, which imports `read` from here until it imports
`lykeion.evaluation.labels` (#12; that file is being changed elsewhere)."""

from lykeion.evaluation.labels import read as read
