"""The suite's version and the version of its results table's schema (rows written under another
schema are never mixed with these)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 2
