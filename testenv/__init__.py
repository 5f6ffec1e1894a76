"""kubekeep's local Kubernetes test environment (not part of the product package).

``python -m testenv build|up|down|env|status|seed``; Python API in
:mod:`testenv.cluster` (``Cluster``), :mod:`testenv.build` (``ensure_binaries``)
and :mod:`testenv.seed`; pytest fixtures in :mod:`testenv.pytest_plugin`.
"""
