#!/usr/bin/env bash
# The kernel matrix: run the matrix subset of the tests on Debian 12's 6.1 and 6.12 kernels
# (each booted under qemu with this host's root file system, by virtme-ng) and on the host's
# own kernel (no VM), then print one table: kernel, features detected, passed/failed/skipped.
#
#   sudo scripts/kernel-matrix.sh [--ci] [--kernels "6.1 6.12 host"] [--out DIR]
#
#   --ci       the reduced subset CI runs (one load variant, the capture subset, the stories)
#   --kernels  which kernels (default: 6.1 6.12 host)
#   --out      where results go (default: a new temporary directory); junit xml per tier
#
# It installs what it needs: qemu, busybox-static, the guest kernels with their headers (BCC
# compiles against /lib/modules/<guest>/build), and virtme-ng in its own venv (/opt/tte-vng).
# Guests run one at a time under software emulation (TCG: hardware virtualization does not
# work on these machines), so waits are scaled by TTE_TEST_WAIT_SCALE (tests/lab/timing.py).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

set_name=full
kernels="6.1 6.12 host"
out=""
while [ $# -gt 0 ]; do
    case $1 in
        --ci) set_name=ci ;;
        --kernels) kernels=$2; shift ;;
        --out) out=$2; shift ;;
        *) echo "kernel-matrix: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" -eq 0 ] || { echo "kernel-matrix: must run as root" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "kernel-matrix: run scripts/setup.sh first" >&2; exit 1; }
out=${out:-$(mktemp -d /tmp/tte-matrix.XXXXXX)}
mkdir -p "$out"
# Waits inside a TCG guest: a BCC compile takes 2-4 minutes there instead of 10 s.
scale=${TTE_TEST_WAIT_SCALE:-10}

# Debian 12's kernels: 6.1 is the version linux-headers-amd64 points to, 6.12 the backport.
guest_version() {
    case $1 in
        6.1) apt-cache depends linux-headers-amd64 | grep Depends: | grep -o 'linux-headers-6\.1[^ ]*-amd64' | head -1 | sed 's/^linux-headers-//' ;;
        6.12) apt-cache depends linux-image-6.12-amd64 | grep Depends: | grep -o 'linux-image-6\.12[^ ]*-amd64' | head -1 | sed 's/^linux-image-//' ;;
    esac
}

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "kernel-matrix: installing ${missing[*]}"
    for _ in 1 2 3 4 5 6; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null && return 0
        echo "kernel-matrix: apt busy, retrying in 20 s" >&2; sleep 20
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

declare -A ver
pkgs=(qemu-system-x86 busybox-static)
for k in $kernels; do
    [ "$k" = host ] && continue
    v=$(guest_version "$k")
    [ -n "$v" ] || { echo "kernel-matrix: apt offers no $k kernel (apt-get update?)" >&2; exit 1; }
    ver[$k]=$v
    pkgs+=("linux-image-$v" "linux-headers-$v")
done
apt_install "${pkgs[@]}"
if [ ! -x /opt/tte-vng/bin/vng ]; then
    echo "kernel-matrix: installing virtme-ng into /opt/tte-vng"
    python3 -m venv /opt/tte-vng
    /opt/tte-vng/bin/pip install -q virtme-ng
fi
export PATH=/opt/tte-vng/bin:$PATH

started=$(date +%s)
rc=0
for k in $kernels; do
    t0=$(date +%s)
    if [ "$k" = host ]; then
        echo "kernel-matrix: host $(uname -r)"
        bash scripts/matrix/guest.sh "$out/host" "$set_name" || rc=1
    else
        v=${ver[$k]}
        echo "kernel-matrix: booting $v under qemu (TCG)"
        # The guest sees this host's root file system read-only; only $out is writable.
        if ! timeout 3600 vng --run "/boot/vmlinuz-$v" --disable-kvm --cpus 2 --memory 3G --rwdir "$out" \
                --exec "cd $repo && TTE_TEST_WAIT_SCALE=$scale bash scripts/matrix/guest.sh $out/$k $set_name" \
                > "$out/$k.vng.log" 2>&1; then
            rc=1
        fi
        [ -f "$out/$k/status.txt" ] || { echo "kernel-matrix: the $k guest wrote no results (see $out/$k.vng.log)" >&2; rc=1; }
    fi
    echo "kernel-matrix: $k took $(( $(date +%s) - t0 )) s"
done
.venv/bin/python scripts/matrix/table.py "$out" $kernels
echo "kernel-matrix: wall time $(( $(date +%s) - started )) s; results in $out"
exit $rc
