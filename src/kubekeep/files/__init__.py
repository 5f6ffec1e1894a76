"""Local file trees as entries: walk one into a snapshot (:mod:`.walk`), write one back without
ever leaving its destination (:mod:`.write`), with restic-like exclude patterns (:mod:`.excludes`).

Used by the ``fs:`` connector on the machine kubekeep runs on and by the helper agent next to a
volume; so it sits below both (docs/architecture.md) and knows nothing of Kubernetes.
"""
