"""The kopf operator that turns ZyraRuns into Jobs and writes back what happened.

    kopf run --standalone -m zyrak8s_operator --all-namespaces     (or --namespace NS)
"""

from zyrak8s_operator import runs  # noqa: F401  (registers the handlers)
