"""Project tooling: fetching models."""
