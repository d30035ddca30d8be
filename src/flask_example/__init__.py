"""flask-example-1: a reference Flask service for proving clusters and pipelines.

`flask_example.app` is the Flask application, `flask_example.server` the gunicorn process
that serves it, `flask_example.settings` the environment both read.
"""

__version__ = "1.0.0"
