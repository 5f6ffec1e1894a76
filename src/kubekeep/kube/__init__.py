"""Kubernetes access: configuration, clients and API calls. The only package that imports the
``kubernetes`` client library; connectors use it, the engine never does."""
