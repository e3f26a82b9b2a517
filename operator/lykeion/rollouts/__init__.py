"""Rollouts that judge themselves: what each version's server reports (`signals.py`), the
pure verdict over one analysis window (`analysis.py`), and the pure walk of a canary through
its steps (`plan.py`). The Deployment handler does the I/O around them."""
