"""Figures: a registry of functions that draw from stored result rows only."""

from figures.registry import FIGURES, render_all

__all__ = ["FIGURES", "render_all"]
