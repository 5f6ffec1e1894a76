"""The manifests layer's pure logic: Kubernetes objects as snapshot files and back.

Nothing here does I/O or imports the ``kubernetes`` client: ``layout`` maps objects to
snapshot paths, ``serialization`` turns them into YAML and back, ``cleaning`` strips what a
restore must not send, ``ordering`` puts a restore into tiers, ``selection`` picks objects,
``fielddiff`` compares two versions of an object, ``summary`` reads a cluster's state from its
objects. ``kube/`` talks to the API server and ``connectors/k8s.py`` joins the two.
"""
