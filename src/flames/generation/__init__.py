"""Getting answers from the model under test."""

from flames.generation.base import Backend, Request
from flames.generation.runner import GenerationSummary, run_generation, run_generation_async

__all__ = ["Backend", "GenerationSummary", "Request", "run_generation", "run_generation_async"]
