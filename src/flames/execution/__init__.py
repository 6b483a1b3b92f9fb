"""Executors that wrap a generation backend or a scorer (in-process, Ray)."""
