"""Clients for model APIs, shared by generation backends and LLM judges, and a server to test them."""
