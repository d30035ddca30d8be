"""flask-example-1: a reference Flask service for proving clusters and pipelines."""

__version__ = "1.0.0"

# After __version__: the settings module reads it as the default version.
from flask_example.factory import create_app

__all__ = ["__version__", "create_app"]
