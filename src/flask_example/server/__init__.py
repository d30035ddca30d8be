"""The gunicorn process that serves the app: configuration and hooks, JSON logs, drain, TLS.

Importing `flask_example.server.gunicorn_conf` imports neither Flask nor the app: each worker
imports the app only after the master has prepared the environment it reads.
"""
