"""`python -m zyrak8s_operator [--namespace NS ... | --all-namespaces]`: the operator, standalone.

Preferred over `kopf run -m zyrak8s_operator.runs`: kopf imports the official Kubernetes client (and
pykube) when it is itself imported, ~60 MiB and 870 modules the operator never uses (it talks to the API
through kubeapi.py). Here those imports are made to fail before kopf is imported; so neither this module
nor the package's __init__ (imported first by `python -m`) may import kopf at module level.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    for name in ("kubernetes", "kubernetes_asyncio", "pykube"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    parser = argparse.ArgumentParser(prog="python -m zyrak8s_operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    args = parser.parse_args(argv)

    import kopf

    from zyrak8s_operator import runs  # noqa: F401  (registers the handlers)

    kopf.run(standalone=True, namespaces=args.namespace, clusterwide=args.all_namespaces or not args.namespace)


if __name__ == "__main__":
    main()
