"""One router module per resource; main.py mounts them at / and /v1."""
