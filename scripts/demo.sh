#!/usr/bin/env bash
# demo.sh shows one appserver and one smartclient at work on this machine:
# a first sync that installs the Linux client from testdata/update/linux, a
# second sync that transfers nothing, then a damaged install that a check
# reports and a third sync repairs, with a backup of what it replaced.
#
#   bash scripts/demo.sh          (or: make demo)
#   KEEP=1 bash scripts/demo.sh   keep the scratch folder for a look around
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

make build

scratch=$(mktemp -d "${TMPDIR:-/tmp}/smartsync-demo.XXXXXX")
log="$scratch/appserver.log"
client="$scratch/client"
server_pid=

cleanup() {
	local status=$?
	if [ -n "$server_pid" ]; then
		# SIGTERM asks the server to drain and stop; wait so that it is gone
		# before its folder is removed.
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if [ "$status" -ne 0 ] && [ -f "$log" ]; then
		echo
		echo "demo failed (exit status $status); appserver log:" >&2
		sed 's/^/    /' "$log" >&2
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "KEEP=1: scratch folder kept at $scratch"
	else
		rm -rf "$scratch"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

header() {
	echo
	echo "=== $* ==="
}

# The publisher signs the Linux release with a key of its own, made here:
# the server and its update folders are copied into the scratch folder so
# that the signed metadata (written beside the folder, as
# testdata/update/linux.release) stays out of the checkout.
mkdir -p "$scratch/testdata"
# The web console listens on a port the kernel chooses too.
sed 's/^;Listen=127.0.0.1:8088$/Listen=127.0.0.1:0/' AppServer.ini.example >"$scratch/AppServer.ini"
cp -a testdata/update "$scratch/testdata/update"
header "the publisher makes a key and signs the Linux release (number 1, valid 90 days)"
pubkey=$(bin/appserver release keygen --out "$scratch/publisher.key")
bin/appserver release sign-update --config "$scratch/AppServer.ini" --os linux \
	--key "$scratch/publisher.key" --number 1 --expires 90d

# --listen overrides [TCP] Port of the INI file, so that the demo never
# collides with a server already on port 1234: port 0 lets the kernel choose.
bin/appserver --config "$scratch/AppServer.ini" --state "$scratch/state" \
	--listen 127.0.0.1:0 >"$log" 2>&1 &
server_pid=$!

# The server logs `level=INFO msg=listening addr=127.0.0.1:PORT` once it
# accepts connections; wait up to 10 s for it.
addr=
for _ in $(seq 1 100); do
	if ! kill -0 "$server_pid" 2>/dev/null; then
		wait "$server_pid" || true
		server_pid=
		echo "appserver exited before listening" >&2
		exit 1
	fi
	line=$({ grep 'listening' "$log" || true; } | grep -m1 'addr=' || true)
	if [ -n "$line" ]; then
		addr=$(printf '%s\n' "$line" | grep -o 'addr=[^ ]*' | head -n1 | sed 's/^addr=//; s/"//g')
		[ -n "$addr" ] && break
	fi
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "appserver did not report a listening address within 10 s" >&2
	exit 1
fi

header "appserver listening on $addr (AppServer.ini.example, update folders in testdata/update)"

# The administrator's deployment gives the workstation the publisher's key.
mkdir -p "$client"
printf '[UPDATE]\nPublisherKey=%s\n' "$pubkey" >"$client/smartclient.ini"

header "first sync: install the Linux client into $client"
bin/smartclient sync --server "$addr" --dir "$client" --os linux --yes

header "the client folder (without the client's own state in .smartclient)"
(
	cd "$client"
	find . -name .smartclient -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
		while IFS= read -r f; do
			printf '%s %8d  %s\n' "$(ls -ld "$f" | cut -c1-10)" "$(wc -c <"$f")" "$f"
		done
)

header "status: the installed build and the signed release it came from"
bin/smartclient status --dir "$client"

header "second sync: nothing changed on the server, so nothing is transferred"
bin/smartclient sync --server "$addr" --dir "$client" --os linux --yes

header "damage the install: overwrite lib/libtlpp.so, delete plugins/report/libreport.so, add a file of our own"
printf 'damaged' >"$client/lib/libtlpp.so"
rm "$client/plugins/report/libreport.so"
printf 'my notes\n' >"$client/notes.txt"

header "check: compare with the server without changing anything (exit 100: an update is available; -v lists it)"
status=0
bin/smartclient sync --check -v --server "$addr" --dir "$client" --os linux || status=$?
if [ "$status" -ne 100 ]; then
	echo "sync --check exited $status, want 100 (an update is available)" >&2
	exit 1
fi

header "third sync: only the two damaged files are fetched; the install is backed up first, notes.txt is left alone"
bin/smartclient sync --server "$addr" --dir "$client" --os linux
ls -d "$client"/bkp_remote.* | sed "s|^$client/||"
cat "$client/notes.txt"

header "the next release: published signed on the running server (build 7.00.240601A), no INI edit, no restart"
cp -a "$scratch/testdata/update/linux" "$scratch/next_linux"
printf 'what is new in 7.00.240601A\n' >"$scratch/next_linux/NEWS.txt"
bin/appserver publish --config "$scratch/AppServer.ini" --state "$scratch/state" --os linux \
	--build 7.00.240601A --key "$scratch/publisher.key" "$scratch/next_linux"
bin/appserver releases --config "$scratch/AppServer.ini" --state "$scratch/state"

header "fourth sync: the published release arrives, verified against the publisher's signature"
bin/smartclient sync --server "$addr" --dir "$client" --os linux
bin/smartclient status --dir "$client"

header "what the server recorded: appserver clients (the web console shows the same)"
bin/appserver clients --config "$scratch/AppServer.ini" --state "$scratch/state"
console=$(sed -n 's/.*msg="web console" url=\([^ ]*\).*/\1/p' "$log" | head -n 1)
if [ -n "$console" ]; then
	echo
	echo "The web console was at $console (pages: /, /clients, /releases, /server; JSON under /api/; /metrics)."
	if command -v curl >/dev/null 2>&1; then
		echo "Its JSON overview:"
		curl -fsS "${console}api/overview" | sed 's/^/    /'
		echo
	fi
fi

header "appserver log"
sed 's/^/    /' "$log"
