#!/usr/bin/env bash
# Fails when gen/ differs from what `buf generate` produces from proto/ now.
# Regenerates into a temp dir, so gen/ itself is never touched.
set -euo pipefail

cd "$(dirname "$0")/.."
# buf runs the local protoc-gen-es plugin from PATH; make this work outside `npm run` too.
export PATH="$PWD/node_modules/.bin:$PATH"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

buf generate -o "$tmp"

if [ ! -d gen ]; then
  echo "generated code is stale: gen/ is missing; run npm run generate" >&2
  exit 1
fi

if ! diff -r "$tmp/gen" gen >"$tmp/diff" 2>&1; then
  cat "$tmp/diff" >&2
  echo "generated code is stale: run npm run generate" >&2
  exit 1
fi
echo "generated code is up to date"
