"""The Flask application: the factory, its blueprints and request hooks.

Nothing here imports the server: the server hands the app what it needs (its readiness) through
create_app's configuration.
"""

from flask_example.app.factory import create_app

__all__ = ["create_app"]
