#!/usr/bin/env bash
# Installs the Debian packages the tests start for real, when any is missing:
# Chromium (tests/integration/browser.test.ts drives it with playwright-core),
# redis-server (the task queue's Redis backend), haproxy (a real front sending X-Forwarded-For and PROXY v2),
# postgresql (the PostgreSQL datastore and task queue: tests/helpers/postgres.ts runs its initdb and pg_ctl,
# which Debian puts in /usr/lib/postgresql/<version>/bin, not on PATH),
# and the commands shellcheck and systemd-analyze (tests/infra/infra.test.ts checks infra/ with them).
set -euo pipefail
packages=(chromium redis-server haproxy shellcheck systemd)
commands=(chromium redis-server haproxy shellcheck systemd-analyze)
missing=()
for i in "${!packages[@]}"; do
  command -v "${commands[$i]}" >/dev/null || missing+=("${packages[$i]}")
done
command -v pg_ctl >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]} (needed by the tests)"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
