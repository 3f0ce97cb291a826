"""Image-editing visual prompts (the baselines) and the registry of scoring methods."""

from .registry import METHODS, MethodSpec, PromptParams, available_methods, parse_method, register_method

__all__ = ["METHODS", "MethodSpec", "PromptParams", "available_methods", "parse_method", "register_method"]
