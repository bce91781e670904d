class ModelError(ValueError):
    """The model was asked something it cannot answer (bad input, a state it cannot build)."""
