"""The kopf operator that turns ZyraRuns into Jobs and writes back what happened.

    python -m zyrak8s_operator --namespace NS      (or --all-namespaces; kopf, standalone)
"""

from zyrak8s_operator import runs  # noqa: F401  (registers the handlers)
