"""Pure domain layer: money, statuses, check digits and errors (no Flask, no SQLAlchemy)."""
