"""Prints a few lines to stdout and stderr, then exits with argv[1] (default 3)."""
import sys

import six  # installed by pip during the image build

code = int(sys.argv[1]) if len(sys.argv) > 1 else 3
for i in range(3):
    print(f"smoke line {i}")
print(f"six {six.__version__}")
print("smoke stderr line", file=sys.stderr)
sys.exit(code)
