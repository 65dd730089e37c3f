#!/usr/bin/env bash
# After a failed tap run (`npm test`): each failing test file and its failing
# points with their diagnostics, read from tap's saved results
# (`.tap/test-results`, or the directory given). Printed last, so a log cut to
# its end, as CI shows it, still says what failed.
set -uo pipefail
results="${1:-$(dirname "$0")/../.tap/test-results}"
echo "# failed test points (from $results):"
grep -rlE --include='*.tap' '^ *not ok ' "$results" | sort | while read -r file; do
  # A file whose only failing points are todos passed.
  grep -E '^ *not ok ' "$file" | grep -qv '# TODO' || continue
  echo "## ${file#"$results"/}"
  grep -nE -A14 '^ *not ok ' "$file" | grep -v '# TODO' | head -80
done
