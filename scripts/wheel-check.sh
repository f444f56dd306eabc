#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv (system site packages, for Debian's BCC) outside
# the checkout, and trace one real refused connect with it: proves the package works as users
# install it, with the BPF sources found as package data rather than in the source tree.
#
#   sudo scripts/wheel-check.sh        (CI runs it from .ci/run after the test suite)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tte-wheel.XXXXXX)
cleanup() { [ -n "${tracer_pid:-}" ] && kill "$tracer_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$here/.venv/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$work/dist" "$here"
wheel=$(ls "$work"/dist/tcptrace_explain-*.whl)
# The wheel must carry the C sources and nothing of the test lab.
/usr/bin/python3 - "$wheel" "$here/bpf" <<'PY'
import os, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
# every C part of the program (tte.bpf.c inlines the rest at build time), and the CLI
need = [f"tracer/bpf/{n}" for n in sorted(os.listdir(sys.argv[2])) if n.endswith((".c", ".h"))]
need += ["tracer/cli.py"]
missing = [n for n in need if n not in names]
lab = [n for n in names if n.startswith(("tests/", "tracer/lab/"))]
if missing or lab:
    sys.exit(f"wheel-check: wheel lacks {missing} or ships test scaffolding {lab}")
PY

/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$wheel"

# Trace from outside the checkout, so nothing can be found relative to the source tree.
cd "$work"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$work/venv/bin/tcptrace-explain" --json --max-events 2 --duration 120 --port "$port" \
    --ready-file "$work/ready" > "$work/out.jsonl" 2> "$work/err.txt" &
tracer_pid=$!
for _ in $(seq 1 1200); do
    [ -s "$work/ready" ] && break
    kill -0 "$tracer_pid" 2>/dev/null || { cat "$work/err.txt" >&2; exit 1; }
    sleep 0.1
done
[ -s "$work/ready" ] || { echo "wheel-check: the tracer never became ready" >&2; cat "$work/err.txt" >&2; exit 1; }
client_pid=$(/usr/bin/python3 -c "
import os, socket, sys
try:
    socket.create_connection(('127.0.0.1', $port), timeout=5)
except ConnectionRefusedError:
    print(os.getpid())
    sys.exit(0)
sys.exit('wheel-check: the connect was not refused')")
wait "$tracer_pid"
tracer_pid=""
/usr/bin/python3 - "$work/out.jsonl" "$port" "$client_pid" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
port, client = int(sys.argv[2]), int(sys.argv[3])
ok = [e for e in events if e["verdict"] == "connection_refused" and e["rport"] == port and e["pid"] == client]
if not ok:
    sys.exit(f"wheel-check: no connection_refused event of pid {client} for port {port}: {events}")
print(f"wheel-check: the installed wheel explained the refused connect of pid {client} to port {port}: "
      f"{ok[0]['event']}, {ok[0]['errno']}, verdict {ok[0]['verdict']}")
PY
