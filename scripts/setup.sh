#!/usr/bin/env bash
# One-command set-up for tcptrace-explain on Debian 12 (run as root).
#
# Installs BCC from Debian (never the unrelated PyPI package named "bcc"), kernel headers for
# BCC's compiler, the test lab's real components, mounts tracefs, and creates .venv with system
# site packages so the venv sees Debian's BCC. Idempotent: a second run only checks.
#
#   sudo scripts/setup.sh            # runtime + test components
#   sudo scripts/setup.sh --runtime  # runtime only (BCC, headers, venv)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
runtime_only=0
[ "${1:-}" = "--runtime" ] && runtime_only=1

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (sudo $0)" >&2
    exit 1
fi

runtime_pkgs=(python3-bpfcc libbpfcc bpfcc-tools python3-venv python3-pip linux-headers-amd64 iproute2
              python3-yaml python3-bcrypt)
# Components the scenario tests drive for real (lab routers, captures, servers, a real Prometheus,
# PostgreSQL as a server that forks a backend per accepted connection, curl as short-lived clients;
# bpftool names the programs whose bpf_stats the benchmark reads, scripts/bench/run.py); redis-server,
# haproxy and OpenJDK (javac) for the real servers and clients of tests/scenario/test_names.py.
# libcap2-bin (capsh): the tracer run as a uid other than 0 with capabilities only (tests/scenario/test_privileges.py).
test_pkgs=(nftables tshark tmux nginx-light prometheus gcc procps postgresql curl bpftool openssl man-db bash-completion
           redis-server redis-tools haproxy openjdk-17-jdk-headless libcap2-bin)

want=("${runtime_pkgs[@]}")
[ "$runtime_only" -eq 1 ] || want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; the answer does not matter for root.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    # Debian starts nginx, prometheus, postgresql, redis-server and haproxy on install (without systemd, through their init
    # scripts); the tests start their own instances, so forbid service starts while installing.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    for svc in nginx prometheus postgresql redis-server haproxy; do
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
fi

# BCC compiles at run time against /lib/modules/$(uname -r)/build. Use the running kernel's
# headers where Debian packages them; otherwise link the distribution's headers. That is safe
# because our programs read only tracepoint arguments and BTF-derived offsets, never a struct
# layout from these headers.
kdir=/lib/modules/$(uname -r)
if [ ! -e "$kdir/build/include" ]; then
    if apt-get install -y -qq "linux-headers-$(uname -r)" >/dev/null 2>&1; then
        echo "setup.sh: installed linux-headers-$(uname -r)"
    else
        arch_dir=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
        common_dir=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$arch_dir" ] || [ -z "$common_dir" ]; then
            echo "setup.sh: no kernel headers found under /usr/src; install linux-headers-amd64" >&2
            exit 1
        fi
        mkdir -p "$kdir"
        ln -sfn "$arch_dir" "$kdir/build"
        ln -sfn "$common_dir" "$kdir/source"
        echo "setup.sh: linked $kdir/build -> $arch_dir (headers of another kernel; see README)"
    fi
fi

# tracefs: BCC reads tracepoint formats from it.
if [ ! -e /sys/kernel/tracing/events ]; then
    mount -t tracefs nodev /sys/kernel/tracing
fi

cd "$here"
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
# Install the project (and its Python dependencies) only when pyproject.toml changed.
stamp=.venv/.tte-installed
extras=""
[ "$runtime_only" -eq 1 ] || extras="[test]"
want_stamp="$(sha256sum pyproject.toml | cut -c1-16)$extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    echo "$want_stamp" > "$stamp"
fi
.venv/bin/python -c "import bcc" || { echo "setup.sh: the venv cannot import Debian's bcc" >&2; exit 1; }

# The man page and the bash completion, generated from the command line's definition
# (tracer/cli.py), so they always match this checkout's options: man tcptrace-explain.
mandir=/usr/local/share/man/man8
mkdir -p "$mandir"
.venv/bin/python -m tracer.manpage > "$mandir/tcptrace-explain.8.new"
mv "$mandir/tcptrace-explain.8.new" "$mandir/tcptrace-explain.8"
compdir=/usr/share/bash-completion/completions
[ -d "$compdir" ] || compdir=/etc/bash_completion.d
mkdir -p "$compdir"
.venv/bin/python -m tracer.completion > "$compdir/tcptrace-explain.new"
mv "$compdir/tcptrace-explain.new" "$compdir/tcptrace-explain"
echo "setup.sh: ready: .venv/bin/tcptrace-explain"
