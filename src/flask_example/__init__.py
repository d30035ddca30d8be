"""flask-example-1: a reference Flask service for proving clusters and pipelines."""

__version__ = "1.0.0"
