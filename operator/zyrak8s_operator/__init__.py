"""The kopf operator that turns ZyraRuns into Jobs and writes back what happened.

    python -m zyrak8s_operator --namespace NS      (or --all-namespaces; kopf, standalone)

The handlers are registered by importing `zyrak8s_operator.runs`, not this package: `python -m` imports
the package before `__main__` runs, and kopf, once imported, has already loaded the official Kubernetes
client (~60 MiB) that `__main__` keeps out.
"""
