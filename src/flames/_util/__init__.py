"""Helpers shared by every layer: event loops, callables, atomic writes, secrets, terminal text."""
