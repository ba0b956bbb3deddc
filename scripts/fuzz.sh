#!/usr/bin/env bash
# fuzz.sh runs every fuzz target in the module, one after the other, for
# FUZZTIME each (default 10s). `go test -fuzz` accepts one target in one
# package per run, so the targets are discovered with `go test -list`.
#
#   FUZZTIME=1m bash scripts/fuzz.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
fuzztime=${FUZZTIME:-10s}
module=$("$GO" list -m)

ran=0
for pkg in $("$GO" list ./...); do
	# Turn the import path into ./relative/dir, the form the brief's users type.
	rel=${pkg#"$module"}
	dir=".${rel:-/}"
	# -list prints the matching names, then an "ok" line; keep the names.
	# A package that does not compile fails here, and so does the script.
	listing=$("$GO" test -list '^Fuzz' "$dir")
	names=$(grep -E '^Fuzz' <<<"$listing" || true)
	for name in $names; do
		echo "==> $dir $name (fuzztime $fuzztime)"
		"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir"
		ran=$((ran + 1))
	done
done

if [ "$ran" -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
else
	echo "fuzz.sh: $ran fuzz target(s) passed"
fi
