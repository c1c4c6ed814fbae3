"""The demonstrations: each states a claim from the ResNet paper or its background,
measures it, and reports whether it held.  Run them with ``python -m minires demo NAME``."""
