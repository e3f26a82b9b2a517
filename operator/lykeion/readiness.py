"""Kept so that existing imports keep working: see `lykeion.local.readiness`."""

from lykeion.local.readiness import NotReady, probe, wait_until_answers

__all__ = ["NotReady", "probe", "wait_until_answers"]
