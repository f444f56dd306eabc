"""Who a process belongs to, read from its cgroup v2 path: the systemd unit and slice, the
container (docker, containerd, cri-o, podman) and the Kubernetes pod and QoS class.

Pure parsing, no I/O: the path comes from the `0::` line of /proc/<pid>/cgroup
(tracer/kernel/procfs.py reads it; tracer/kernel/cgroups.py caches it per pid). The layouts,
as the runtimes and the kubelet create them:

  systemd           /system.slice/nginx.service
                    /user.slice/user-1000.slice/session-3.scope
                    /user.slice/user-1000.slice/user@1000.service/app.slice/foo.service
  docker            /system.slice/docker-<id>.scope            (systemd cgroup driver)
                    /docker/<id>                                (cgroupfs driver)
  containerd (CRI)  .../cri-containerd-<id>.scope
  cri-o             .../crio-<id>.scope  (its monitor: crio-conmon-<id>.scope)
  podman            /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>
  kubelet, systemd  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/<container>
                    /kubepods.slice/kubepods-pod<uid>.slice/<container>            (Guaranteed)
  kubelet, cgroupfs /kubepods/burstable/pod<uid>/<id>, /kubepods/pod<uid>/<id>     (Guaranteed)
  another cgroupns  /../../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope

Any prefix is allowed (a kind or k3s node runs the kubelet inside a container, so its pods sit
below the node's own container cgroup); the innermost container and pod win. systemd escapes
'-' as '_' inside a slice name, so a pod UID read from a slice is unescaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# A container ID: the 64 hex digits every one of these runtimes uses.
_ID = r"[0-9a-f]{64}"
# <prefix>-<id>.scope (systemd driver) and the cgroupfs spellings: (regex, runtime)
_CONTAINER_SCOPES = (
    (re.compile(rf"^docker-({_ID})\.scope$"), "docker"),
    (re.compile(rf"^cri-containerd-({_ID})\.scope$"), "containerd"),
    (re.compile(rf"^crio-(?:conmon-)?({_ID})\.scope$"), "cri-o"),
    (re.compile(rf"^crio-({_ID})$"), "cri-o"),
    (re.compile(rf"^libpod-(?:conmon-)?({_ID})\.scope$"), "podman"),
    (re.compile(rf"^libpod-({_ID})$"), "podman"),
)
_BARE_ID = re.compile(rf"^({_ID})$")
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD_SLICE = re.compile(rf"^(?:[a-z0-9_]+-)*kubepods(?:-(burstable|besteffort))?-pod({_UID})\.slice$")
_POD_DIR = re.compile(rf"^pod({_UID})$")
QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
_UNIT_SUFFIXES = (".service", ".scope")


@dataclass(frozen=True)
class Workload:
    """What a cgroup path says about its processes; None where the path does not say."""

    cgroup: str
    unit: Optional[str] = None            # innermost systemd unit: nginx.service, session-3.scope
    slice: Optional[str] = None           # innermost systemd slice: system.slice, user-1000.slice
    container_runtime: Optional[str] = None   # docker | containerd | cri-o | podman | None (cgroupfs id)
    container_id: Optional[str] = None
    pod_uid: Optional[str] = None
    pod_qos: Optional[str] = None         # guaranteed | burstable | besteffort

    def describe(self) -> str:
        """One short phrase for the console: the most specific owner the path names."""
        parts = []
        if self.pod_uid:
            parts.append(f"pod {self.pod_uid} ({self.pod_qos})")
        if self.container_id:
            parts.append(f"container {self.container_runtime or 'id'} {self.container_id[:12]}")
        if self.unit and not self.container_id:
            parts.append(f"unit {self.unit}")
        if not parts and self.slice:
            parts.append(f"slice {self.slice}")
        return ", ".join(parts) or f"cgroup {self.cgroup}"


def parse(path: str) -> Workload:
    """The workload a cgroup v2 path (as in /proc/<pid>/cgroup, starting with '/') names."""
    parts = [p for p in path.split("/") if p]
    unit = slice_ = runtime = cid = pod = None
    qos: Optional[str] = None
    # A path read from inside another cgroup namespace (a DaemonSet pod reading the node's
    # processes) is relative to that namespace's root and may start below kubepods: /../../
    # kubepods-besteffort-pod<uid>.slice/... Its pod names still count; its QoS may be unknown.
    in_kubepods = bool(parts) and parts[0] == ".."
    for i, part in enumerate(parts):
        if part.endswith(_UNIT_SUFFIXES):
            unit = part
        elif part.endswith(".slice"):
            slice_ = part
        found = _container(part)
        if found is not None:
            runtime, cid = found
        elif in_kubepods and pod is not None and _BARE_ID.match(part):
            # cgroupfs layout: /kubepods/<qos>/pod<uid>/<id>; the runtime is not in the path
            runtime, cid = None, part
        elif part == "docker" and i + 1 < len(parts) and _BARE_ID.match(parts[i + 1]):
            runtime, cid = "docker", parts[i + 1]
        if part == "kubepods" or part.endswith("kubepods.slice"):
            in_kubepods, pod, qos = True, None, "guaranteed"
            continue
        m = _POD_SLICE.match(part)   # the slice's name says kubepods itself
        if m:
            in_kubepods, pod, qos = True, _unescape(m.group(2)), m.group(1) or "guaranteed"
            continue
        if not in_kubepods:
            continue
        m = _POD_DIR.match(part)
        if m:
            pod = _unescape(m.group(1))
        elif pod is None and part in ("burstable", "besteffort"):
            qos = part
        elif pod is None and (part.endswith("kubepods-burstable.slice") or part.endswith("kubepods-besteffort.slice")):
            qos = part[:-len(".slice")].rsplit("-", 1)[1]
    if pod is None:
        qos = None
    return Workload(cgroup=path, unit=unit, slice=slice_, container_runtime=runtime, container_id=cid,
                    pod_uid=pod, pod_qos=qos)


def v2_path(text: str) -> Optional[str]:
    """The cgroup v2 path in the text of /proc/<pid>/cgroup (its `0::` line); None if the
    process is in no v2 hierarchy (a v1-only host)."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def _container(part: str) -> Optional[tuple[str, str]]:
    for rx, runtime in _CONTAINER_SCOPES:
        m = rx.match(part)
        if m:
            return runtime, m.group(1)
    return None


def _unescape(uid: str) -> str:
    return uid.replace("_", "-")


# Why a cgroup is missing from an event: the JSON's cgroup_status.
KNOWN = "known"
PROCESS_GONE = "process_gone"      # the owner exited before its /proc/<pid>/cgroup was read
NO_OWNER = "no_owner"              # the event has no owning process (a reset without a socket)
NO_CGROUP_V2 = "no_cgroup_v2"      # the process is in no cgroup v2 hierarchy (a v1-only host)
NOT_RECORDED = "not_recorded"      # replay: the recording holds no cgroup for this pid
STATUSES = (KNOWN, PROCESS_GONE, NO_OWNER, NO_CGROUP_V2, NOT_RECORDED)


@dataclass(frozen=True)
class CgroupInfo:
    """An event owner's cgroup, or why it is not known."""

    status: str
    workload: Optional[Workload] = None

    @classmethod
    def from_path(cls, path: Optional[str]) -> "CgroupInfo":
        return cls(KNOWN, parse(path)) if path is not None else cls(NO_CGROUP_V2)

    def to_json(self) -> dict[str, object]:
        w = self.workload
        return {"cgroup": w.cgroup if w else None, "cgroup_status": self.status,
                "unit": w.unit if w else None, "slice": w.slice if w else None,
                "container_runtime": w.container_runtime if w else None,
                "container_id": w.container_id if w else None,
                "pod_uid": w.pod_uid if w else None, "pod_qos": w.pod_qos if w else None}
