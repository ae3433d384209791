"""Runnable applications built on shoal."""
