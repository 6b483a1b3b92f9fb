"""Scorers: the official scorer, LLM judges, refusals, human labels, the scoring loop."""
