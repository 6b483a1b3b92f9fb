"""Clients for model APIs, shared by generation backends and LLM judges; a server to test them."""
