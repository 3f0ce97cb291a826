"""Analysis tools: per-head decomposition, unleashed visual prompts, attention maps, sweeps and ablations."""
