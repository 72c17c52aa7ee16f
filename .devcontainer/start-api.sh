#!/usr/bin/env bash
# Started by the dev container on every start (postStartCommand): serve the API on 0.0.0.0:8000 in the
# background, with Redis and S3 from compose.yaml (settings in dev.env). Log: /tmp/zyra-api.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f /tmp/zyra-api.pid ] && kill -0 "$(cat /tmp/zyra-api.pid)" 2>/dev/null; then
  echo "the API already runs (pid $(cat /tmp/zyra-api.pid))"; exit 0
fi
nohup .venv/bin/python -m zyrak8s_api > /tmp/zyra-api.log 2>&1 &
echo $! > /tmp/zyra-api.pid
for _ in $(seq 60); do
  if curl -fsS http://127.0.0.1:8000/health >/dev/null 2>&1; then
    echo "API on http://127.0.0.1:8000 (key: dev-key; docs: /docs; log: /tmp/zyra-api.log)"; exit 0
  fi
  sleep 1
done
echo "the API did not answer within 60 s; see /tmp/zyra-api.log" >&2
exit 1
