"""The synthetic-law domain (``benchmarks/adaptive.py``) is registered at collection, before any Ray starts, so the
workers of a shared test Ray find it too."""

from benchmarks.adaptive import register

register()
