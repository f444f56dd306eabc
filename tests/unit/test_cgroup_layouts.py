"""Cgroup v2 paths -> systemd unit, container and pod, for every layout the runtimes make; the
per-pid resolver's cache and its answers once a process is gone."""

from __future__ import annotations

import json

import pytest

from tracer.kernel.cgroups import CgroupResolver, RecordedCgroups
from tracer.model.history import History
from tracer.sinks import recording
from tracer.model import cgroups
from tracer.model.cgroups import CgroupInfo, parse, v2_path

pytestmark = pytest.mark.unit
CID = "3f2a" + "0123456789abcdef" * 3 + "c0ffee123456"
UID = "0c3a1e7c-5d2b-4a8f-9e61-7b2f1d6c4e90"
ESC = UID.replace("-", "_")

LAYOUTS = [
    # path, unit, slice, runtime, container id, pod uid, qos
    ("/system.slice/nginx.service", "nginx.service", "system.slice", None, None, None, None),
    ("/system.slice/postgresql@15-main.service", "postgresql@15-main.service", "system.slice", None, None, None, None),
    ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", "user-1000.slice", None, None, None, None),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "foo.service", "app.slice",
     None, None, None, None),
    ("/system.slice/docker-" + CID + ".scope", "docker-" + CID + ".scope", "system.slice", "docker", CID, None, None),
    ("/docker/" + CID, None, None, "docker", CID, None, None),
    ("/system.slice/cri-containerd-" + CID + ".scope", "cri-containerd-" + CID + ".scope", "system.slice",
     "containerd", CID, None, None),
    ("/machine.slice/libpod-" + CID + ".scope", "libpod-" + CID + ".scope", "machine.slice", "podman", CID, None, None),
    ("/machine.slice/libpod-" + CID + ".scope/container", "libpod-" + CID + ".scope", "machine.slice",
     "podman", CID, None, None),
    ("/libpod_parent/libpod-" + CID, None, None, "podman", CID, None, None),
    ("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + CID + ".scope",
     "libpod-" + CID + ".scope", "user.slice", "podman", CID, None, None),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESC}.slice/cri-containerd-{CID}.scope",
     f"cri-containerd-{CID}.scope", f"kubepods-burstable-pod{ESC}.slice", "containerd", CID, UID, "burstable"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{ESC}.slice/crio-{CID}.scope",
     f"crio-{CID}.scope", f"kubepods-besteffort-pod{ESC}.slice", "cri-o", CID, UID, "besteffort"),
    (f"/kubepods.slice/kubepods-pod{ESC}.slice/crio-{CID}.scope",
     f"crio-{CID}.scope", f"kubepods-pod{ESC}.slice", "cri-o", CID, UID, "guaranteed"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESC}.slice/docker-{CID}.scope",
     f"docker-{CID}.scope", f"kubepods-burstable-pod{ESC}.slice", "docker", CID, UID, "burstable"),
    (f"/kubepods/burstable/pod{UID}/{CID}", None, None, None, CID, UID, "burstable"),
    (f"/kubepods/besteffort/pod{UID}/{CID}", None, None, None, CID, UID, "besteffort"),
    (f"/kubepods/pod{UID}/{CID}", None, None, None, CID, UID, "guaranteed"),
    (f"/kubepods/burstable/pod{UID}/crio-{CID}", None, None, "cri-o", CID, UID, "burstable"),
    # a kind node: the kubelet's pods below the node's own docker container
    (f"/system.slice/docker-{'ab' * 32}.scope/kubelet.slice/kubelet-kubepods.slice/"
     f"kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{ESC}.slice/cri-containerd-{CID}.scope",
     f"cri-containerd-{CID}.scope", f"kubelet-kubepods-burstable-pod{ESC}.slice", "containerd", CID, UID, "burstable"),
    # the pod's own cgroup (a process placed there, not in a container): pod without container
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESC}.slice",
     None, f"kubepods-burstable-pod{ESC}.slice", None, None, UID, "burstable"),
    ("/", None, None, None, None, None, None),
    # read from inside another cgroup namespace (a DaemonSet pod): relative to the reader's root
    (f"/../../kubepods-besteffort-pod{ESC}.slice/cri-containerd-{CID}.scope",
     f"cri-containerd-{CID}.scope", f"kubepods-besteffort-pod{ESC}.slice", "containerd", CID, UID, "besteffort"),
    (f"/../../../burstable/pod{UID}/{CID}", None, None, None, CID, UID, "burstable"),
    (f"/../../pod{UID}/{CID}", None, None, None, CID, UID, None),      # QoS not in the path
    (f"/../../../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESC}.slice/crio-{CID}.scope",
     f"crio-{CID}.scope", f"kubepods-burstable-pod{ESC}.slice", "cri-o", CID, UID, "burstable"),
]


@pytest.mark.parametrize("path,unit,slice_,runtime,cid,pod,qos", LAYOUTS, ids=lambda v: str(v)[:60])
def test_each_layout_names_its_unit_container_and_pod(path, unit, slice_, runtime, cid, pod, qos):
    w = parse(path)
    assert (w.cgroup, w.unit, w.slice, w.container_runtime, w.container_id, w.pod_uid, w.pod_qos) == \
        (path, unit, slice_, runtime, cid, pod, qos)


@pytest.mark.parametrize("path", [
    "/system.slice/docker-notahexid.scope",             # not a container id
    "/system.slice/docker.service",                      # the daemon itself, not a container
    f"/pod{UID}/{CID}",                                  # pod-like names outside kubepods
    "/kubepods/burstable",                               # the QoS level, no pod
])
def test_lookalikes_are_not_containers_or_pods(path):
    w = parse(path)
    assert (w.container_runtime, w.container_id, w.pod_uid, w.pod_qos) == (None, None, None, None)


def test_v2_line_of_a_hybrid_host():
    text = "9:name=systemd:/\n4:memory:/process_api/xyz\n0::/system.slice/nginx.service\n"
    assert v2_path(text) == "/system.slice/nginx.service"
    assert v2_path("4:memory:/docker/abc\n") is None
    assert v2_path("0::\n") == "/"


def test_describe_names_the_most_specific_owner():
    assert parse(LAYOUTS[11][0]).describe() == f"pod {UID} (burstable), container containerd {CID[:12]}"
    assert parse("/system.slice/nginx.service").describe() == "unit nginx.service"
    assert parse("/user.slice").describe() == "slice user.slice"
    assert parse("/").describe() == "cgroup /"


def test_json_fields_say_why_a_cgroup_is_unknown():
    gone = CgroupInfo(cgroups.PROCESS_GONE).to_json()
    assert gone["cgroup"] is None and gone["cgroup_status"] == "process_gone"
    known = CgroupInfo.from_path("/system.slice/redis-server.service").to_json()
    assert known["cgroup_status"] == "known" and known["unit"] == "redis-server.service"
    assert set(gone) == set(known)


class FakeProc:
    def __init__(self) -> None:
        self.files: dict[int, str] = {}
        self.t = 0.0

    def read(self, pid: int):
        return self.files.get(pid)

    def clock(self) -> float:
        return self.t


def test_resolver_keeps_what_it_read_while_the_process_lived():
    proc = FakeProc()
    proc.files[42] = "0::/system.slice/app.service\n"
    r = CgroupResolver(read=proc.read, clock=proc.clock)
    r.prime(42, 10)
    del proc.files[42]                      # exits before its event is explained
    proc.t = 100.0                          # long after the TTL
    info = r.info(42, 20)
    assert info.status == "known" and info.workload.unit == "app.service"
    assert r.info(7, 30).status == "process_gone"
    assert r.info(None).status == "no_owner" and r.info(0).status == "no_owner"
    assert r.seen == {42: "/system.slice/app.service", 7: "process_gone"}


def test_resolver_caches_per_pid_and_rereads_after_the_ttl():
    proc = FakeProc()
    proc.files[5] = "0::/a.slice/x.service\n"
    r = CgroupResolver(read=proc.read, clock=proc.clock, ttl_s=10)
    for _ in range(100):
        r.prime(5)
    assert r.reads == 1
    proc.files[5] = "0::/b.slice/y.service\n"     # moved (or the pid was reused)
    proc.t = 11
    assert r.info(5).workload.unit == "y.service" and r.reads == 2


def test_resolver_is_bounded():
    proc = FakeProc()
    for pid in range(1, 50):
        proc.files[pid] = f"0::/system.slice/s{pid}.service\n"
    r = CgroupResolver(read=proc.read, clock=proc.clock, limit=10)
    for pid in range(1, 50):
        r.prime(pid)
    assert len(r._cache) == 10 and r.evicted == 39


def test_recorded_table_answers_replay():
    r = RecordedCgroups(History({1: [(0, "/system.slice/a.service")], 2: [(0, "process_gone")], 3: [(0, "bogus")]}))
    assert r.info(1, 5).workload.unit == "a.service"
    assert r.info(2, 5).status == "process_gone"
    assert r.info(3, 5).status == "not_recorded" and r.info(4, 5).status == "not_recorded"


def test_replay_gives_a_reused_pid_the_cgroup_it_had_at_each_event():
    """Live, pid 42 is a service's, then (reused) a container's: each event keeps its own."""
    proc = FakeProc()
    proc.files[42] = "0::/system.slice/app.service\n"
    live = CgroupResolver(read=proc.read, clock=proc.clock, ttl_s=10)
    live.prime(42, 1_000)
    proc.files[42] = f"0::/system.slice/docker-{CID}.scope\n"
    proc.t = 11.0
    live.prime(42, 2_000)
    end = {"cgroups": {str(k): v for k, v in live.seen.items()}, "cgroup_history": live.history.to_json()}
    cgroups, uids = recording.pid_histories(json.loads(json.dumps(end)))
    assert uids is None
    replayed = RecordedCgroups(cgroups)
    assert replayed.info(42, 1_500).workload.unit == "app.service"
    assert replayed.info(42, 2_500).workload.container_id == CID
    # A recording made before the history was kept: its flat table, for the whole run.
    old, _ = recording.pid_histories({"cgroups": {"42": "/system.slice/app.service"}})
    assert RecordedCgroups(old).info(42, 2_500).workload.unit == "app.service"


def _annotated():
    import dataclasses

    from tests.unit.helpers import record
    from tracer.explain.pipeline import explain_stream

    [e] = explain_stream([record()])
    path = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{ESC}.slice/cri-containerd-{CID}.scope"
    return dataclasses.replace(e, cgroup=CgroupInfo.from_path(path), netns_name="blue")


def test_annotated_event_validates_against_the_schema():
    import json

    import jsonschema

    from tests.unit.test_schema import schema

    s = schema()
    assert set(s["properties"]["cgroup_status"]["enum"]) == set(cgroups.STATUSES)
    d = json.loads(json.dumps(_annotated().to_json()))
    jsonschema.Draft202012Validator(s).validate(d)
    assert (d["pod_uid"], d["pod_qos"], d["container_runtime"], d["netns_name"]) == \
        (UID, "burstable", "containerd", "blue")


def test_console_names_the_workload_and_the_namespace():
    import io

    from tracer.sinks.console import ConsoleSink

    out = io.StringIO()
    ConsoleSink(out=out, color=False).event(_annotated())
    # (joined: the console's wrapping of piped output is another change's business)
    text = " ".join(out.getvalue().split())
    assert f"in pod {UID} (burstable), container containerd {CID[:12]}, netns blue" in text


def test_console_says_nothing_for_the_root_cgroup():
    import dataclasses
    import io

    from tracer.sinks.console import ConsoleSink

    out = io.StringIO()
    ConsoleSink(out=out, color=False).event(dataclasses.replace(_annotated(), cgroup=CgroupInfo.from_path("/"),
                                                                netns_name=None))
    assert "\n  in " not in out.getvalue()
