"""Loading open_clip models as FovealCLIP; per-model presets (data); falip's shipped configs and weights.

Importing this package is light; :mod:`falip.models.loading` imports open_clip and registers
falip's shipped configs with it.
"""
