"""Checks shipped with the engine for whoever writes a search backend (as `optuna.testing`
ships its sampler tests): `search.testing.backend_conformance`."""
