#!/usr/bin/env bash
# Under CI, PostgreSQL tests must run: start the local cluster if it is not up.
set -uo pipefail
[ "${CI:-}" = "true" ] || exit 0
command -v pg_isready >/dev/null 2>&1 || { echo "CI=true but PostgreSQL is not installed" >&2; exit 1; }
pg_isready -h 127.0.0.1 -p 5432 -q && exit 0
ver=$(ls /etc/postgresql 2>/dev/null | head -n1)
if [ -n "$ver" ] && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
fi
for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && exit 0; sleep 1; done
echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
