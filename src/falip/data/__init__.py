"""Readers and writers of dataset files; numpy and PIL only (no torch), usable without a model."""
