"""The helper agent: runs beside a volume (in a helper pod) and serves its files to kubekeep.

``protocol`` is the wire format (framing, authentication, sealing), ``server`` the agent itself
(``kubekeep agent`` or ``python -m kubekeep.agent``, the entry point of the agent image), and
``client`` kubekeep's side of a session. The agent imports nothing that talks to Kubernetes:
it needs only the chunker, the hashing and the fs connector. docs/volumes.md has the protocol.
"""
