"""Test support: tiny random-weight models and the naive reference (one place, imported by the tests)."""
