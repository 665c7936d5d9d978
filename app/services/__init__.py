"""Use cases: the only code that commits (one unit of work per use case)."""
