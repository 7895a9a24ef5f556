"""Concrete spiders, one module per source and kind: ``<source>_<kind>.py``."""
