"""Offline stores: the full feature history with event times, for training sets."""
