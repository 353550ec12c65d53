"""Architecture search over autoencoder families, scored by a downstream probe.

    import search
    result = search.run("digits", trials=20)

The engine is imported on first use, so `import search` stays cheap."""

__all__ = ["run", "resume", "export_best", "StudyResult"]


def __getattr__(name):
    if name in __all__:
        from search import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
