"""The command line: the one place that prints errors and chooses exit codes.

    sudo tcptrace-explain [--pid N] ...       trace and explain live
    tcptrace-explain replay FILE              explain a recording (no root)
    tcptrace-explain merge A.jsonl B.jsonl    explain resets from both ends (one recording per host)
    sudo tcptrace-explain doctor              what works here, and the fix for what does not
    sudo tcptrace-explain exporter            Prometheus metrics

Exit codes: 0 done; 1 internal error; 2 usage; 3 not privileged; 4 BCC missing; 5 kernel
headers missing; 6 tracefs not mounted; 7 kernel lacks a feature; 8 the BPF program failed to
load; 9 no such process; 10 bad recording; 11 records lost (with --strict); 12 an output file
cannot be created; 13 the recording stopped early (disk full); 14 the output cannot be
written (disk full).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import sys
import traceback
from typing import Any, Callable, Iterator, Optional

import click

from tracer import __version__
from tracer.model.errors import TteError
from tracer.model.options import RINGBUF_PAGES_MAX, STORM_LIMIT_MAX, STORM_LIMIT_MIN, Options
from tracer.model.safe import printable
from tracer.cliparams import Seconds

EXAMPLES = """
\b
Examples:
  sudo tcptrace-explain                         every reset and abort on this host
  sudo tcptrace-explain --pid 4242              only process 4242's connections
  sudo tcptrace-explain -p 4242,4243 --compact  two processes, one line per event
  sudo tcptrace-explain --port 8080 --duration 300 --record resets.jsonl
  sudo tcptrace-explain --rport 5432 --uid www-data   www-data's connections to PostgreSQL
  sudo tcptrace-explain --cgroup /system.slice/nginx.service -6
  sudo tcptrace-explain --verdict stale_after_idle,write_after_peer_close
  sudo tcptrace-explain --netns blue            one network namespace (ip netns name, path or inode)
  sudo tcptrace-explain --json | jq .verdict    one JSON object per event
  tcptrace-explain replay resets.jsonl          explain a recording later, without root
  tcptrace-explain merge client.jsonl server.jsonl   both ends of each reset, one recording per host
  sudo tcptrace-explain doctor                  check this machine
"""


REPLAY_EXAMPLES = """
\b
Examples:
  tcptrace-explain replay resets.jsonl                    every event, explained in full
  tcptrace-explain replay --compact resets.jsonl          one line per event
  tcptrace-explain replay resets.jsonl | grep -c 'reason NO_SOCKET'   one line per field when piped
  tcptrace-explain replay --pid 4242 --verdict stale_after_idle resets.jsonl
  tcptrace-explain replay --uid 33 --cgroup /system.slice/nginx.service resets.jsonl
  tcptrace-explain replay --json resets.jsonl | jq -r .verdict | sort | uniq -c

\b
The filters judge what the live run recorded: an owner's uid and cgroup are the ones it read
then; an event whose owner was not known does not match --uid or --cgroup.
"""

MERGE_EXAMPLES = """
\b
Examples:
  sudo tcptrace-explain --record host-a.jsonl            on host A (the client)
  sudo tcptrace-explain --states --record host-b.jsonl   on host B (the server), same time window
  tcptrace-explain merge host-a.jsonl host-b.jsonl       later, anywhere, no root
  tcptrace-explain merge --json host-a.jsonl host-b.jsonl | jq .pairing
"""

DOCTOR_EXAMPLES = """
\b
Examples:
  sudo tcptrace-explain doctor          every check, and the fix for each problem
  tcptrace-explain doctor; echo $?      unprivileged: the privileges first, exit status 3

\b
Exit status: 0 ready to trace; 3 not privileged (root, or CAP_BPF and CAP_PERFMON, and a
readable tracefs); 7 another check failed.
"""

COMPACT_HELP = ("One line per event (time, event, process[pid], local and remote endpoint, state, idle, verdict, "
                "who) instead of the full explanation.")


def filter_options(live: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The bcc-style filters, shared by the live run, replay and the exporter. `live`: say which
    of them the kernel applies (in a replay, all of them judge the recorded events)."""
    k = "; in the kernel" if live else ""
    from tracer.cliparams import IntList, UidList, VerdictList

    ports = IntList(1, 65535, "PORT")
    opts = [
        click.option("-p", "--pid", "pids", type=IntList(1, 2**22, "PID"), multiple=True,
                     help=f"Only sockets these processes hold (comma list, repeatable){k}; an accepted socket "
                          "is its holder's, not the listener's."),
        click.option("--children", is_flag=True,
                     help="With --pid: also the processes' descendants (a pre-forked server's workers)."),
        click.option("--comm", "comms", multiple=True,
                     help=f"Only sockets owned by processes with this name (repeatable){k}."),
        click.option("--port", "ports", type=ports, multiple=True,
                     help=f"Local or remote port (comma list, repeatable){k}."),
        click.option("--lport", "lports", type=ports, multiple=True,
                     help=f"Local port (comma list, repeatable){k.replace('in the kernel', 'in the kernel as a port of either side')}."),
        click.option("--rport", "rports", type=ports, multiple=True,
                     help=f"Remote port (comma list, repeatable){k.replace('in the kernel', 'in the kernel as a port of either side')}."),
        click.option("-4", "--ipv4", "ipv4", is_flag=True, help="Only IPv4 sockets."),
        click.option("-6", "--ipv6", "ipv6", is_flag=True, help="Only IPv6 sockets (IPv4-mapped addresses included)."),
        click.option("--uid", "uids", type=UidList(), multiple=True,
                     help="Only sockets whose owner runs as this effective uid or user (comma list, repeatable); "
                          "read from /proc/PID/status, so an event whose owner is unknown does not match."),
        click.option("--cgroup", "cgroups", multiple=True, metavar="PATH",
                     help="Only sockets whose owner is in this cgroup v2 or below it (repeatable): a path as in "
                          "/proc/PID/cgroup (/system.slice/nginx.service) or under the cgroup2 mount; an event whose "
                          "owner is unknown does not match."),
        click.option("--netns", "netns_specs", multiple=True, metavar="NAME|PATH|INODE",
                     help="Only this network namespace: an `ip netns` name, a namespace file "
                          f"(/proc/PID/ns/net) or its inode (comma list, repeatable){k}."),
        click.option("--remote", "remotes", multiple=True,
                     help="Remote address or CIDR (repeatable)."),
        click.option("--verdict", "verdicts", type=VerdictList(), multiple=True,
                     help="Only events with this verdict code (comma list, repeatable), e.g. "
                          "stale_after_idle,write_after_peer_close."),
    ]

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for o in reversed(opts):
            f = o(f)
        return f
    return apply


def privilege_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--user / --no-drop-privileges, for the commands that load BPF programs."""
    f = click.option("--no-drop-privileges", "keep_root", is_flag=True,
                     help="Stay root after start-up (by default the tracer becomes --user with no "
                          "capabilities once its programs are attached).")(f)
    return click.option("--user", "drop_user", default="nobody", show_default=True, metavar="NAME",
                        help="The unprivileged user to become once the programs are attached "
                             "(its primary group too; README: Running it safely).")(f)


def _check_user(name: str, keep_root: bool) -> None:
    if keep_root:
        return
    from tracer.kernel.privileges import resolve_user

    try:
        resolve_user(name)
    except TteError as exc:
        raise click.BadParameter(f"{exc.message} ({exc.remedy})", param_hint="--user") from None


def _netns_values(specs: tuple[str, ...]) -> list[str]:
    return [v.strip() for spec in specs for v in spec.split(",")]


def _event_filter(params: dict[str, Any], known_netns: Optional[dict[str, int]] = None, live: bool = True):
    """EventFilter from the parameters filter_options added (removed from `params`)."""
    from tracer.cliparams import cgroup_paths, flat
    from tracer.explain.filters import EventFilter
    from tracer.kernel import netns

    v4, v6 = params.pop("ipv4"), params.pop("ipv6")
    return EventFilter(
        pids=flat(params.pop("pids")), children=bool(params.pop("children")),
        comms=frozenset(params.pop("comms")), ports=flat(params.pop("ports")),
        lports=flat(params.pop("lports")), rports=flat(params.pop("rports")),
        families=frozenset(f for f, on in (("ipv4", v4), ("ipv6", v6)) if on and not (v4 and v6)),
        uids=flat(params.pop("uids")), cgroups=cgroup_paths(params.pop("cgroups"), live=live),
        verdicts=flat(params.pop("verdicts")),
        netns=netns.resolve_all(_netns_values(params.pop("netns_specs")), known=known_netns),
        remotes=tuple(_networks(params.pop("remotes"))),
    )


def _kernel_options(flt, **kw) -> Options:
    try:
        return Options(pids=flt.pids, children=flt.children, comms=flt.comms, ports=flt.kernel_ports,
                       netns=flt.netns, **kw)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _networks(values: tuple[str, ...]) -> list[Any]:
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise click.BadParameter(f"{v!r} is not an address or CIDR (e.g. 10.0.0.0/8, 2001:db8::1)",
                                     param_hint="--remote") from None
    return nets


def _version_text() -> str:
    from tracer.kernel import host as kernel
    from tracer.kernel import loader
    from tracer.kernel.features import read_features

    lines = [f"tcptrace-explain {__version__}", f"bcc {loader.bcc_version()}", f"kernel {kernel.release()}"]
    try:
        f = read_features()
        lines.append("tcp_send_reset: " + ("sockaddr layout (6.10+)" if f.rst_layout_sockaddr else "ports layout")
                     + (f", {len(f.reset_reasons)} reset reasons" if f.rst_has_reason else ", no reason field"))
    except TteError as exc:
        lines.append(f"tracepoints: {exc.message}")
    lines.append("BTF: " + ("present (idle times from socket timestamps)" if kernel.btf_present() else "missing"))
    return "\n".join(lines)


def _print_version(ctx, param, value) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(_version_text())
    ctx.exit(0)


@click.group(invoke_without_command=True, epilog=EXAMPLES,
             context_settings={"help_option_names": ["-h", "--help"]})
@filter_options(live=True)
@click.option("--duration", type=Seconds(), help="Stop after this many seconds.")
@click.option("--max-events", type=click.IntRange(min=1, max=2**63 - 1), help="Stop after this many explained events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout, nothing else.")
@click.option("--states", is_flag=True, help="Also capture state changes (recorded with --record).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False), help="Record the raw stream for replay (a new file, mode 0600).")
@click.option("--force", is_flag=True, help="With --record: overwrite an existing recording.")
@click.option("--append", is_flag=True, help="With --record: add this run to an existing recording.")
@click.option("--ready-file", type=click.Path(dir_okay=False), help="Created (new, mode 0600) once every probe is attached.")
@click.option("--ringbuf-pages", type=click.IntRange(min=1, max=RINGBUF_PAGES_MAX), default=256, show_default=True,
              help="Ring buffer size in pages (a power of two); raise it if records are lost.")
@click.option("--storm-limit", type=click.IntRange(STORM_LIMIT_MIN, STORM_LIMIT_MAX), default=5000, show_default=True,
              help="Events per CPU per second explained one by one; beyond it the kernel counts them and "
                   "they are shown as reset_storm summaries (during a storm, 50/s per CPU stay in full).")
@click.option("--strict", is_flag=True, help="Exit with status 11 if any record was lost or any kernel event was missed.")
@click.option("--ignore-kernel-reason", is_flag=True, help="Infer reset reasons as on kernels without them.")
@click.option("--io-hooks/--no-io-hooks", default=None, hidden=True, help="Force the per-I/O fallback hooks.")
@click.option("--print-program", is_flag=True, hidden=True, help="Print the compiled configuration and exit.")
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
@click.option("--compact", is_flag=True, help=COMPACT_HELP)
@privilege_options
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show versions and detected kernel features.")
@click.pass_context
def cli(ctx, /, duration, max_events, as_json, states, record_path, force, append, ready_file,
        ringbuf_pages, storm_limit, strict, ignore_kernel_reason, io_hooks, print_program, color, compact,
        drop_user, keep_root, **filters) -> None:
    """Explain every TCP reset and abort on this host as it happens: which process, how long
    the connection had been idle, who reset it, why, and what to change."""
    if ctx.invoked_subcommand is not None:
        return
    from tracer.sinks.console import ConsoleSink
    from tracer.sinks.jsonl import JsonSink
    from tracer.live import RunLimits, run_live

    from tracer.kernel import preflight

    preflight.check_privileges()      # before anything else: no other error stands in for it
    existing = _existing(record_path, force, append)
    _check_user(drop_user, keep_root)
    flt = _event_filter(filters)
    options = _kernel_options(flt, states=states, io_hooks=io_hooks, ringbuf_pages=ringbuf_pages,
                              ignore_kernel_reason=ignore_kernel_reason, storm_limit=storm_limit)
    limits = RunLimits(duration_s=duration, max_events=max_events, strict=strict)
    if print_program:
        from tracer.kernel.capture import Capture

        click.echo(Capture(options).build().describe())
        return
    sink = JsonSink() if as_json else ConsoleSink(color=color, compact=compact)
    from tracer.kernel import netns

    banner = None if as_json else (f"tcptrace-explain {__version__}: tracing TCP resets and aborts of "
                                   f"{flt.describe(netns.names() if flt.netns else None)}; Ctrl-C for the summary")
    with _output_may_close():
        run_live(options, sink, limits, record_path=record_path, ready_file=ready_file, event_filter=flt,
                 record_existing=existing, banner=banner,
                 drop_to=None if keep_root else drop_user)


@contextlib.contextmanager
def _output_may_close() -> Iterator[None]:
    """The reader of stdout went away (`| head -1`): a normal end, not an error. Handled here,
    inside the command, because click turns an EPIPE it sees into exit status 1."""
    try:
        yield
        sys.stdout.flush()    # what is still buffered fails here, not in the interpreter's exit
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _existing(record_path: Optional[str], force: bool, append: bool):
    from tracer.sinks.outfile import Existing

    if force and append:
        raise click.UsageError("--force and --append exclude each other")
    if (force or append) and not record_path:
        raise click.UsageError("--force and --append apply to --record FILE")
    return Existing.REPLACE if force else Existing.APPEND if append else Existing.REFUSE


@cli.command(epilog=REPLAY_EXAMPLES)
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout.")
@click.option("--compact", is_flag=True, help=COMPACT_HELP)
@filter_options(live=False)
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
@click.option("--processes", type=click.IntRange(1, 2), default=None,
              help="1: read and explain in one process; 2: explain in a second process, on a second CPU "
                   "(the same output, sooner). Default: 2 for a recording of 4 MB or more when this process may run on two "
                   "CPUs (its CPU affinity; a CPU quota is not looked at).")
def replay(path, as_json, compact, color, processes, **filters) -> None:
    """Explain a recording made with --record (no root needed)."""
    from tracer.sinks import recording
    from tracer.sinks.console import ConsoleSink
    from tracer.sinks.jsonl import JsonSink
    from tracer.replay import default_processes, replay as do_replay

    flt = _event_filter(filters, known_netns=recording.netns_history(recording.tail_end(path)).inodes_by_name(), live=False)
    sink = JsonSink() if as_json else ConsoleSink(color=color, compact=compact)
    with _output_may_close():
        do_replay(path, sink, event_filter=flt, processes=processes or default_processes(path))


@cli.command(epilog=MERGE_EXAMPLES)
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout.")
@click.option("--color/--no-color", default=None, help="Force colours on or off.")
def merge(paths, as_json, color) -> None:
    """Explain each reset from both ends: recordings (--record) from several hosts over the same
    time window, paired by TCP sequence numbers (through NAT), with the clocks' skew estimated
    (no root needed)."""
    from tracer.merge import merge as do_merge
    from tracer.sinks.console import ConsoleSink
    from tracer.sinks.jsonl import JsonSink

    sink = JsonSink() if as_json else ConsoleSink(color=color)
    with _output_may_close():
        do_merge(paths, sink)


@cli.command(epilog=DOCTOR_EXAMPLES)
def doctor() -> None:
    """Check privileges, BCC, headers, tracefs, tracepoints, BTF; print the fix for each problem."""
    from rich.console import Console
    from rich.text import Text

    from tracer.doctor import privileged, run_checks

    checks, _ = run_checks()
    con = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    bad = 0
    for c in checks:
        mark, style = ("ok", "green") if c.ok else (("FAIL", "bold red") if c.required else ("warn", "yellow"))
        if not c.ok and c.required:
            bad += 1
        t = Text(f"{mark:>4}  ", style=style)
        t.append(f"{c.name}: {c.detail}")
        if not c.ok and c.fix:
            t.append(f"\n      fix: {c.fix}", style="bold")
        con.print(t)
    if not privileged(checks):
        # exit 3 like a live run: what to fix first is the privileges, whatever else is found
        con.print(Text("not privileged: fix the privileges first (exit 3)", style="bold red"))
        sys.exit(3)
    con.print(Text("ready to trace" if not bad else f"{bad} problem(s) to fix first",
                   style="bold green" if not bad else "bold red"))
    if bad:
        sys.exit(7)


EXPORTER_EXAMPLES = """
\b
Examples:
  sudo tcptrace-explain exporter                      every process, on 127.0.0.1:9567
  sudo tcptrace-explain exporter --listen 0.0.0.0:9567 --top-workloads 50
  sudo tcptrace-explain exporter --port 8080 --port 5432   only these ports' connections
  sudo tcptrace-explain exporter --comm java --comm nginx  only processes with these names
  sudo tcptrace-explain exporter --pid 4242 --children     a pre-forked server and its workers
  curl -s 127.0.0.1:9567/metrics | grep tcptrace_explained_total

\b
Deployment: deploy/tcptrace-explain-exporter.service (systemd) and
deploy/daemonset.yaml (Kubernetes), described in the README's "Exporter" section;
deploy/grafana-dashboard.json is a dashboard for the metrics.
"""


@cli.command(epilog=EXPORTER_EXAMPLES)
@click.option("--listen", default="127.0.0.1:9567", show_default=True, metavar="HOST:PORT",
              help="Address to serve /metrics on; [::]:PORT for IPv6; port 0 picks a free one "
                   "(written to --ready-file).")
@filter_options(live=True)
@click.option("--top-processes", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Process names with their own 'comm' label value (the first seen keep it for the "
                   "exporter's life); the rest are folded into 'other'.")
@click.option("--top-workloads", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Workloads (systemd unit, container, pod) with their own labels at a time in "
                   "tcptrace_events_by_workload_total; more are 'other'; one without events for an "
                   "hour gives its place back.")
@click.option("--endpoint-labels", is_flag=True,
              help="Also count events by service endpoint (the listening side's address:port), "
                   "bounded like processes; off by default because a host may serve many.")
@click.option("--ready-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the port being served to FILE once every probe is attached and the "
                   "server listens (for scripts and tests).")
@click.option("--duration", type=Seconds(), hidden=True)
@privilege_options
@click.option("--web.config.file", "web_config", type=click.Path(dir_okay=False), metavar="FILE",
              help="TLS and basic auth, in the Prometheus exporter-toolkit format (README: Running it safely); "
                   "read again on SIGHUP.")
def exporter(listen, top_processes, top_workloads, endpoint_labels, ready_file, duration, drop_user, keep_root,
             web_config, **filters) -> None:
    """Serve Prometheus metrics of TCP resets and aborts: by kernel reason, errno, verdict, who
    reset, process and workload, with the idle time before each reset. Counters kept in the
    kernel are read at scrape time; every series the tool can know in advance is served at 0
    from the start, so rate() and increase() see the first burst. The filters apply as in a
    live run, with one difference: the counters kept in the kernel (tcptrace_resets_total,
    tcptrace_aborts_total, tcptrace_state_transitions_total) follow only what the kernel filters
    (--pid, --comm, --port/--lport/--rport as a port on either end, --netns); --uid, --cgroup,
    --verdict, -4/-6 and --remote choose among the explained events (tcptrace_events_total,
    tcptrace_explained_total and the series by workload and endpoint)."""
    from tracer.kernel import preflight
    from tracer.serve import parse_listen, run_exporter

    preflight.check_privileges()
    host, port = parse_listen(listen)
    _check_user(drop_user, keep_root)
    flt = _event_filter(filters)
    run_exporter(_kernel_options(flt), host, port, top_processes=top_processes, endpoint_labels=endpoint_labels,
                 top_workloads=top_workloads, ready_file=ready_file, duration_s=duration, event_filter=flt,
                 web_config=web_config, drop_to=None if keep_root else drop_user)


def main(argv: Optional[list[str]] = None, interruptible: bool = False) -> int:
    """Entry point and error boundary: typed errors become a message and their exit code.
    `interruptible`: Ctrl-C was made quiet while modules loaded (tracer/entry.py); from here on
    it is a KeyboardInterrupt again, caught below."""
    debug = bool(os.environ.get("TTE_DEBUG"))
    if interruptible:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli.main(args=argv, prog_name="tcptrace-explain", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    except TteError as exc:
        click.echo(f"tcptrace-explain: error: {printable(exc.message)}", err=True)
        if exc.remedy:
            click.echo(f"  fix: {printable(exc.remedy)}", err=True)
        if debug:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): point stdout at /dev/null so the interpreter's
        # final flush does not complain, and end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception:  # noqa: BLE001 - the boundary: never a bare traceback for users
        click.echo("tcptrace-explain: internal error (a bug); run again with TTE_DEBUG=1 and report the output",
                   err=True)
        if debug:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
