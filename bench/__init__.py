"""SAE-latent circuit discovery benchmark: one spliced model, one task interface, pluggable methods."""

__version__ = "0.1.0"
SCHEMA_VERSION = 2
