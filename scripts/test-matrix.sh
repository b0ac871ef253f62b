#!/usr/bin/env bash
# The core tests on the other Node versions users run (22, 24), through the `node`
# npm package: the lockfile pins what works on Node 20, so this checks it runs there too.
set -euo pipefail
cd "$(dirname "$0")/.."
files=(test/unit/policy.test.ts test/integration/token-manager.test.ts test/integration/interceptor.test.ts)
status=0
for version in 22 24; do
  log=$(mktemp)
  if npx -y "node@${version}" --import tsx --test --test-reporter=tap "${files[@]}" >"$log" 2>&1; then
    echo "node ${version}: $(grep -E '^# (pass|fail) ' "$log" | tr '\n' ' ')"
  else
    echo "node ${version}: FAILED"; grep -E '^\s*not ok|^# (pass|fail) ' "$log" || tail -50 "$log"
    status=1
  fi
  rm -f "$log"
done
exit $status
