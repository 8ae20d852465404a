"""Compatibility alias: the method types live in :mod:`bench.api` (the harness and plugins both import them there)."""

from bench.api import Circuit, CircuitSet, Method, MethodConfig, MethodContext, Scores

__all__ = ["Circuit", "CircuitSet", "Method", "MethodConfig", "MethodContext", "Scores"]
