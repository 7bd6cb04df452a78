"""batch-override: submit identifAI classification overrides in bulk."""

__version__ = "0.1.0"
