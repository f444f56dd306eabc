#!/usr/bin/env bash
# One kernel of the matrix: run the chosen test tiers on the RUNNING kernel and write the
# results under OUT (junit xml per tier, features.txt, pytest logs). scripts/kernel-matrix.sh
# runs this inside each qemu guest (and directly on the host for the host's own kernel).
#
#   scripts/matrix/guest.sh OUT SET
#     SET: full (every tier's matrix subset) or ci (the reduced subset CI runs)
set -uo pipefail
out=$1
set_name=$2
cd "$(dirname "$0")/../.."
mkdir -p "$out"

# qemu guests: tracefs may be unmounted, loopback down.
[ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
ip link set lo up 2>/dev/null || true
# A guest boots with no modules loaded: the lab's NAT router sets conntrack sysctls before
# its nftables rules would load nf_conntrack on demand.
modprobe -a nf_conntrack nf_nat nf_tables 2>/dev/null || true

.venv/bin/tcptrace-explain --version > "$out/features.txt" 2>&1 || true
uname -r > "$out/kernel.txt"

# Tiers and the tests of each (node ids that exist in tests/; see README "Kernel support").
load=(tests/load/test_program.py)
capture=(
    "tests/scenario/test_capture.py::test_connect_to_closed_port"
    "tests/scenario/test_capture.py::test_close_with_unread_data"
    "tests/scenario/test_capture.py::test_so_linger_zero_close"
    "tests/scenario/test_capture.py::test_peer_writes_after_our_close_timewait_reset"
)
lab=(
    "tests/scenario/test_lab.py::test_scenario[pool_keepalive]"
    "tests/scenario/test_lab.py::test_scenario[nat_idle]"
    "tests/scenario/test_lab.py::test_scenario[client_timeout]"
    "tests/scenario/test_lab.py::test_scenario[time_wait_pileup]"
    "tests/scenario/test_lab.py::test_scenario[read_timeout_broken_pipe]"
)
# The tool says what it cannot see: the kernel's OutRsts beside its own count (one more compile).
cli=("tests/scenario/test_cli.py::test_kernel_out_rsts_beside_the_tools_count_where_not_every_reset_is_traced")
if [ "$set_name" = ci ]; then
    load=("tests/load/test_program.py::test_this_kernels_own_layout")
    cli=()
fi

rc=0
# capture and lab share one pytest session, so the program compiles once per guest.
for tier in load scenario; do
    if [ $tier = load ]; then sel=("${load[@]}"); else sel=("${capture[@]}" "${lab[@]}" "${cli[@]}"); fi
    start=$(date +%s)
    .venv/bin/python -m pytest -q -p no:cacheprovider -rs --junitxml="$out/$tier.xml" \
        "${sel[@]}" > "$out/$tier.log" 2>&1
    r=$?
    echo "$tier rc=$r $(( $(date +%s) - start ))s" >> "$out/status.txt"
    [ $r -eq 0 ] || rc=$r
done
exit $rc
