"""Fixtures shared by every test folder: the local S3 server and OCI registry (tests.support) and
the local Kubernetes control plane (testenv)."""

pytest_plugins = [
    "tests.support.s3_fixtures",
    "tests.support.registry_fixtures",
    "testenv.pytest_plugin",
    "tests.support.k8s_fixtures",
]
