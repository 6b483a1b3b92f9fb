"""Scorers: the official scorer, LLM and callable judges, human labels, the scoring loop."""
