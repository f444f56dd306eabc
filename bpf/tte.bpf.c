/* tcptrace-explain kernel side (BCC): capture every TCP reset and abort with its socket's
 * context, and only those, so the cost grows with the reset rate and not with traffic.
 *
 * Hooks: tracepoints only (this project's kernels have no kprobes).
 *   sock:inet_sock_set_state  keeps the per-socket table (owner, birth, FIN, close times)
 *   tcp:tcp_send_reset        -> TTE_REC_RESET_SENT
 *   tcp:tcp_receive_reset     -> TTE_REC_RESET_RECEIVED
 *   inet_sk_error_report (raw tracepoint: argument 0 is the struct sock *) -> TTE_REC_ABORT
 *   tcp:tcp_destroy_sock      ends a table entry; keeps a copy keyed by 4-tuple for late resets;
 *                             names the holder of an accepted socket that produced a record
 *   tcp:tcp_retransmit_skb    counts retransmits per socket
 *   sock:sock_send_length / sock_recv_length  only with TTE_IO_HOOKS (kernels without BTF)
 *
 * The parts, by concern (each included once, in this order):
 *   tte.h          the record layout shared with the Python decoder (tracer/model/abi.py)
 *   config.bpf.h   -D configuration from tracer/kernel/program.py; BTF offsets are mandatory
 *   maps.bpf.h     every map, with where its entries are inserted, deleted and read
 *   kread.bpf.h    kernel struct reads at BTF offsets (never compiler-known layouts)
 *   compat.bpf.h   kernel-compatibility shims, each citing the change that made it necessary
 *   context.bpf.h  a socket's owner, table entry and closed history in a record; filters
 *   storm.bpf.h    storm accounting: over the per-CPU rate, count instead of send
 *   emit.bpf.h     record emission: emit_begin() and submit()
 *   owners.bpf.h   the holder of an accepted socket, named at its close (TTE_REC_OWNER)
 * BCC rewrites map calls only in its main file, so tracer/kernel/sources.py hands it this file
 * with the parts inlined (#line directives keep diagnostics pointing at the right file).
 */
#include <uapi/linux/ptrace.h>
#include "tte.h"
#include "config.bpf.h"
#include "maps.bpf.h"
#include "kread.bpf.h"
#include "compat.bpf.h"
#include "context.bpf.h"
#include "storm.bpf.h"
#include "emit.bpf.h"
#include "owners.bpf.h"

/* ---------------------------------------------------------------- state changes ---- */

/* The state changes the socket table acts on: a new socket (connect, listen, an accepted
 * child), ESTABLISHED (its time, and the tuple), the peer's FIN (ESTABLISHED -> CLOSE_WAIT), the
 * local close (-> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK), any change out of SYN_SENT or SYN_RECV (the
 * tuple of a connection that never got established; an abandoned connect), and a listener's
 * close. The rest (FIN_WAIT1 -> FIN_WAIT2, -> CLOSING, -> CLOSE after any of these) would only
 * move the entry's state_ns, right before tcp_destroy_sock deletes it. */
static __always_inline int table_follows(int os, int ns)
{
    return (os == TTE_TCP_CLOSE && (ns == TTE_TCP_SYN_SENT || ns == TTE_TCP_LISTEN)) || os == TTE_TCP_LISTEN ||
           ns == TTE_TCP_ESTABLISHED || (os == TTE_TCP_ESTABLISHED && ns == TTE_TCP_CLOSE_WAIT) ||
           ns == TTE_TCP_FIN_WAIT1 || (os == TTE_TCP_CLOSE_WAIT && ns == TTE_TCP_LAST_ACK) ||
           os == TTE_TCP_SYN_SENT || os == TTE_TCP_SYN_RECV;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != TTE_IPPROTO_TCP)
        return 0;
    /* ctx fields read once, up front (see tcp_send_reset): with the --pid filter compiled in,
     * clang re-read args->sport through an offset ctx pointer, which the verifier rejects. */
    u64 key = (u64)args->skaddr;
    const void *sk = (const void *)args->skaddr;
    int os = args->oldstate, ns = args->newstate;
    u16 sport = args->sport, dport = args->dport, family = args->family;
#if !TTE_EMIT_STATES && !TTE_FILTER_PID && !TTE_FILTER_COMM && !TTE_FILTER_PORT && !TTE_FILTER_NETNS
    /* Most changes of a clean connection need nothing from the table, and its lookup is most of
     * this program's cost: count them and stop. (With filters the count must wait for the
     * table to say whether the socket is ours; with --states every change is a record.) */
    if (!table_follows(os, ns)) {
        if (os >= 0 && os < 16 && ns >= 0 && ns < 16)
            stat_inc(TTE_STAT_STATE_BASE + os * 16 + ns);
        return 0;
    }
#endif
    u64 now = bpf_ktime_get_ns();
    struct tte_sock *s = 0;
    struct tte_sock fresh; /* a new entry, zeroed where it is built (not on every change) */
    int is_new = (os == TTE_TCP_CLOSE && (ns == TTE_TCP_SYN_SENT || ns == TTE_TCP_LISTEN)) ||
                 (os == TTE_TCP_LISTEN && ns == TTE_TCP_SYN_RECV);
    /* A new socket needs no lookup: whatever its (reused) address held is replaced. */
    if (!is_new)
        s = socks.lookup(&key);

    if (is_new) {
        /* A new socket (its address may be a reused one: start afresh). */
        __builtin_memset(&fresh, 0, sizeof(fresh));
        int deferred = 0;
        fresh.birth_ns = now;
        fresh.netns = sk_netns(sk);
        if (os == TTE_TCP_LISTEN) {
            /* Accepted child: softirq, possibly in an unrelated task. Inherit the listener's owner. */
            u64 lkey = ((u64)fresh.netns << TTE_LISTENER_NETNS_SHIFT) | sport;
            struct tte_listener *ls = listeners.lookup(&lkey);
            fresh.opened = TTE_F_ACCEPTED >> 8;
            if (ls) {
                fresh.pid = ls->pid;
                __builtin_memcpy(fresh.comm, ls->comm, TTE_COMM_LEN);
                __builtin_memcpy(fresh.thread, ls->thread, TTE_COMM_LEN);
                fresh.owner_src = TTE_OWNER_LISTENER;
                deferred = ls->flags & TTE_LISTENER_TRACED;
            }
        } else {
            capture_owner(&fresh, ns == TTE_TCP_LISTEN ? TTE_OWNER_LISTEN : TTE_OWNER_CONNECT);
            if (ns == TTE_TCP_SYN_SENT)
                fresh.opened = TTE_F_CONNECTED >> 8;
        }
        if (filtered_out(fresh.pid, fresh.comm, fresh.netns, sport, dport, deferred))
            return 0; /* not ours: keep neither the entry nor its cost */
        if (ns == TTE_TCP_LISTEN) {
            u64 lkey = ((u64)fresh.netns << TTE_LISTENER_NETNS_SHIFT) | sport;
            struct tte_listener l = {};
            l.pid = fresh.pid;
            __builtin_memcpy(l.comm, fresh.comm, TTE_COMM_LEN);
            __builtin_memcpy(l.thread, fresh.thread, TTE_COMM_LEN);
            listeners.update(&lkey, &l);
        }
        fresh.state = ns;
        fresh.state_ns = now;
        socks.update(&key, &fresh);
        stat_inc(TTE_STAT_SOCKS_INSERT);
        /* What follows only reads the entry: the copy on the stack is the same, without a
         * second lookup. */
        s = &fresh;
    } else if (!s && (ns == TTE_TCP_FIN_WAIT1 || (os == TTE_TCP_CLOSE_WAIT && ns == TTE_TCP_LAST_ACK))) {
        /* A socket that predates the tracer, closed by its owner (close() runs in the owner's
         * syscall): from here on it has an owner, and its timewait history can be kept. */
        __builtin_memset(&fresh, 0, sizeof(fresh));
        fresh.netns = sk_netns(sk);
        capture_owner(&fresh, TTE_OWNER_CLOSE);
        if (filtered_out(fresh.pid, fresh.comm, fresh.netns, sport, dport, 0))
            return 0;
        fresh.state = ns;
        fresh.state_ns = now;
        fresh.close_ns = now;
        fresh.family = family;
        fresh.lport = sport;
        fresh.rport = dport;
        ADDRS_FROM_ARGS(family, fresh.laddr, fresh.raddr);
        socks.update(&key, &fresh);
        stat_inc(TTE_STAT_SOCKS_INSERT);
        if (os == TTE_TCP_ESTABLISHED)
            count_active_close(&fresh);
        return 0;
    } else if (!s) {
#if TTE_EMIT_STATES && !TTE_FILTER_PID && !TTE_FILTER_COMM
        /* A socket that predates the tracer: report the change with what the event itself has. */
        if (filtered_out(0, 0, sk_netns(sk), sport, dport, 0))
            return 0;
        struct tte_record *r = emit_begin(TTE_REC_STATE, key, 0, ns, -1, 0, now, 0, 0, family, 0, sport);
        if (!r)
            return 0;
        r->old_state = os;
        tuple_from_sk(r, sk);
        r->netns = sk_netns(sk);
        if (seq_set_at(os, ns))
            read_seq_fields(r, sk);
        submit(r);
#endif
        return 0;
    } else {
        if (sport) {
            s->family = family;
            s->lport = sport;
            s->rport = dport;
            ADDRS_FROM_ARGS(family, s->laddr, s->raddr);
        }
        s->state = ns;
        s->state_ns = now;
        if (ns == TTE_TCP_ESTABLISHED)
            s->estab_ns = now;
        if (os == TTE_TCP_ESTABLISHED && ns == TTE_TCP_CLOSE_WAIT) {
            u32 now_j = (u32)bpf_jiffies64();
            s->fin_ns = now;
            s->fin_last_send_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LSNDTIME), now_j, now);
            s->fin_last_recv_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LRCVTIME), now_j, now);
        }
        if (ns == TTE_TCP_FIN_WAIT1 || (os == TTE_TCP_CLOSE_WAIT && ns == TTE_TCP_LAST_ACK)) {
            /* close()/shutdown() runs in the owner's syscall: refresh the owner. */
            s->close_ns = now;
            emit_owner(s, key, now);
            capture_owner(s, TTE_OWNER_CLOSE);
            if (os == TTE_TCP_ESTABLISHED)
                count_active_close(s);
        }
        if (os == TTE_TCP_SYN_SENT && ns == TTE_TCP_CLOSE && !rd_u32(sk, TTE_OFF_SK_ERR)) {
            /* The application gave up on connect() (close or connect(AF_UNSPEC) in its own
             * syscall; a refusal, timeout or ICMP error sets sk_err first): keep the history,
             * so the late SYN-ACK's reset from no socket finds who abandoned it, and when. */
            s->close_ns = now;
        }
        if (os == TTE_TCP_LISTEN && ns == TTE_TCP_CLOSE) {
            u64 lkey = ((u64)s->netns << TTE_LISTENER_NETNS_SHIFT) | sport;
            struct tte_listener *l = listeners.lookup(&lkey);
            if (l && l->pid == s->pid)
                listeners.delete(&lkey);
        }
    }

    if (os >= 0 && os < 16 && ns >= 0 && ns < 16)
        stat_inc(TTE_STAT_STATE_BASE + os * 16 + ns);

#if TTE_EMIT_STATES
    struct tte_record *r = emit_begin(TTE_REC_STATE, key, 0, ns, -1, 0, now, s->pid, s->comm, s->family, s->raddr,
                                      sport);
    if (!r)
        return 0;
    r->old_state = os;
    tuple_from_sk(r, sk);
    r->netns = s->netns;
    copy_sock(r, s);
    if (seq_set_at(os, ns))
        read_seq_fields(r, sk);
    submit(r);
#endif
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    u64 key = (u64)args->skaddr;
    struct tte_sock *s = socks.lookup(&key);
    if (s)
        s->retrans++;
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
    u64 key = (u64)args->skaddr;
    struct tte_sock *s = socks.lookup(&key);
    if (!s)
        return 0;
    emit_owner(s, key, bpf_ktime_get_ns());
    /* Keep the history of a connection this side closed first: its timewait socket may still
     * answer the peer's late data with an RST, which only a 4-tuple can join back to it. */
    if (s->close_ns && (!s->fin_ns || s->close_ns < s->fin_ns) && args->dport != 0) {
        const void *sk = (const void *)args->skaddr;
        struct tte_tuple t = {};
        t.netns = s->netns;
        t.family = args->family;
        t.lport = args->sport;
        t.rport = args->dport;
        ADDRS_FROM_ARGS(args->family, t.laddr, t.raddr);
        tuple_unmap(&t);
        struct tte_closed_ref ref;
        if (closed_slot(&t, &ref)) {
            struct tte_closed *c = ref.c;
            u64 now = bpf_ktime_get_ns();
            u32 now_j = (u32)bpf_jiffies64();
            __builtin_memcpy(&c->sock, s, sizeof(c->sock));
            c->last_send_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LSNDTIME), now_j, now);
            c->last_recv_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LRCVTIME), now_j, now);
            c->last_ack_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_RCV_TSTAMP), now_j, now);
            c->srtt_us = rd_u32(sk, TTE_OFF_TP_SRTT_US) >> 3;
            c->total_retrans = rd_u32(sk, TTE_OFF_TP_TOTAL_RETRANS);
            c->flags = flags_from_sk(sk);
            closed_commit(&ref, now); /* last: the slot is valid from here on */
            stat_inc(TTE_STAT_CLOSED_INSERT);
        }
    }
    socks.delete(&key);
    stat_inc(TTE_STAT_SOCKS_DELETE);
    return 0;
}


/* ---------------------------------------------------------------- resets ----------- */

/* The storm key's service port of a reset sent with no socket and no history, from the
 * segment it answers: a SYN came to this host's port (local, marked TTE_STORM_SYN: nothing
 * listens there), a SYN-ACK answered a connect this host had given up (remote); anything
 * else, the lower of the two. */
static __always_inline u32 no_socket_service_port(const void *skb, u16 lport, u16 rport)
{
    u8 f = skb ? segment_flags(skb) : 0;
    if ((f & (TTE_TCPF_SYN | TTE_TCPF_ACK)) == TTE_TCPF_SYN)
        return TTE_STORM_SYN | lport;
    if ((f & (TTE_TCPF_SYN | TTE_TCPF_ACK)) == (TTE_TCPF_SYN | TTE_TCPF_ACK))
        return rport;
    return lport < rport ? lport : rport;
}

TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    /* Read ctx fields once, up front: re-reading args->skbaddr later lets clang derive it from
     * an offset ctx pointer, which the verifier rejects on some layouts. */
    u64 key = (u64)args->skaddr;
    const void *sk = (const void *)args->skaddr;
    const void *skb = (const void *)args->skbaddr;
    u64 now = bpf_ktime_get_ns();
    struct tte_tuple t = {};
    int state;
    s32 reason;
    u32 flags = 0;

    state = RST_STATE_FROM_ARGS(sk);
    reason = RST_REASON_FROM_ARGS();
    if (skb == 0)
        flags |= TTE_F_ACTIVE;

    RST_TUPLE_FROM_ARGS(&t, sk);

    if (sk) {
        t.netns = sk_netns(sk);
    } else {
        /* No socket: the namespace is the receiving device's. */
        const void *dev = (const void *)rd_u64(skb, TTE_OFF_SKB_DEV);
        const void *net = dev ? (const void *)rd_u64(dev, TTE_OFF_NETDEV_NET) : 0;
        t.netns = net ? rd_u32(net, TTE_OFF_NET_INUM) : 0;
        flags |= TTE_F_NO_SOCKET;
    }

    if (state == TTE_TCP_LISTEN && skb && t.rport == 0)
        remote_from_skb(&t, skb);
    tuple_unmap(&t);

    struct tte_sock *s = 0;
    struct tte_closed *c = 0;
    struct tte_owner *io = 0;
    u64 ino = 0;
    if (!sk || state == TTE_TCP_TIME_WAIT) {
        if (sk)
            flags |= TTE_F_TIMEWAIT;
        c = closed_find(&t);
    } else {
        s = socks.lookup(&key);
        ino = sk_inode(sk);
        if (!s)
            /* An orphan's own reset (data after close): tcp_done() has already destroyed the
             * socket and moved its history to the closed table by the time this fires. */
            c = closed_find(&t);
    }
    u32 pid = c ? c->sock.pid : owner_of(s, ino, &io);
    const char *comm = c ? c->sock.comm : (s ? s->comm : (io ? io->comm : 0));
    if (not_ours(pid, comm, t.netns, t.lport, t.rport, s))
        return 0;
    if (reason >= 0 && reason < 63)
        stat_inc(TTE_STAT_RST_SENT_BASE + reason);
    else
        stat_inc(TTE_STAT_RST_SENT_BASE + 63);
    struct tte_record *r = emit_begin(TTE_REC_RESET_SENT, key, s, state, reason, 0, now, pid, comm, t.family,
                                      t.raddr, sk || c ? service_port(c ? &c->sock : s, t.lport, t.rport)
                                                       : no_socket_service_port(skb, t.lport, t.rport));
    if (!r)
        return 0;
    r->family = t.family;
    r->lport = t.lport;
    r->rport = t.rport;
    __builtin_memcpy(r->laddr, t.laddr, 16);
    __builtin_memcpy(r->raddr, t.raddr, 16);
    r->netns = t.netns;
    r->ino = ino;
    r->flags = flags;
    if (skb) {
        r->seg_flags = segment_flags(skb);
        segment_seq(r, skb);
    }
    if (c) {
        fill_from_closed(r, c);
    } else if (sk) {
        if (state != TTE_TCP_TIME_WAIT)
            r->flags |= flags_from_sk(sk);
        fill_owner(r, s, io);
        if (state == TTE_TCP_LISTEN) {
            /* the listener's own history is not the connection's */
            r->birth_ns = r->estab_ns = r->state_ns = r->close_ns = r->fin_ns = 0;
            r->flags &= ~(u32)TTE_F_SOCK_KNOWN;
        }
        if (full_tcp_state(state) || state == TTE_TCP_CLOSE)
            read_tcp_fields(r, sk, now);
        mark_notable(s);
    }
    submit(r);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    /* ctx fields read once, up front (see tcp_send_reset). */
    u64 key = (u64)args->skaddr;
    const void *sk = (const void *)args->skaddr;
    u16 sport = args->sport, dport = args->dport, family = args->family;
    u64 now = bpf_ktime_get_ns();
    struct tte_who w;
    who_owns(&w, key, sk);
    if (not_ours(w.pid, w.comm, w.netns, sport, dport, w.s))
        return 0;
    stat_inc(TTE_STAT_RST_RECEIVED);
    /* tcp_reset() fires this before tcp_done(): the state is the one the RST arrived in. */
    u8 rstate = rd_u8(sk, TTE_OFF_SKC_STATE);
    u8 ra[16] = {};
    if (family == TTE_AF_INET6)
        __builtin_memcpy(ra, args->daddr_v6, 16);
    else
        __builtin_memcpy(ra, args->daddr, 4);
    struct tte_record *r = emit_begin(TTE_REC_RESET_RECEIVED, key, w.s, rstate, -1, 0, now, w.pid, w.comm,
                                      family, ra, service_port(w.s, sport, dport));
    if (!r)
        return 0;
    r->family = family;
    r->lport = sport;
    r->rport = dport;
    ADDRS_FROM_ARGS(family, r->laddr, r->raddr);
    r->cookie = RECV_COOKIE_FROM_ARGS();
    r->netns = w.netns;
    r->ino = w.ino;
    r->flags = flags_from_sk(sk);
    fill_owner(r, w.s, w.io);
    if (full_tcp_state(r->state))
        read_tcp_fields(r, sk, now);
    mark_notable(w.s);
    submit(r);
    return 0;
}

/* ---------------------------------------------------------------- aborts ----------- */

/* The format of sock:inet_sk_error_report has no socket pointer; the raw tracepoint's first
 * argument is the struct sock *, which joins the errno to the socket exactly. */
RAW_TRACEPOINT_PROBE(inet_sk_error_report)
{
    const void *sk = (const void *)ctx->args[0];
    if (rd_u16(sk, TTE_OFF_SK_PROTOCOL) != TTE_IPPROTO_TCP)
        return 0;
    u16 family = rd_u16(sk, TTE_OFF_SKC_FAMILY);
    if (family != TTE_AF_INET && family != TTE_AF_INET6)
        return 0;
    int err = (int)rd_u32(sk, TTE_OFF_SK_ERR);
    /* A failed connect reports again with 0 after tcp_disconnect(); only errors matter. */
    if (err <= 0)
        return 0;
    u64 key = (u64)sk;
    u64 now = bpf_ktime_get_ns();
    struct tte_who w;
    who_owns(&w, key, sk);
    /* The ports from the table where it has the socket: tcp_done() has unhashed it (local port
     * 0) and tcp_disconnect() cleared the remote one by now, which would fail --port and key
     * the storm bucket apart from its reset's. */
    int known = w.s && w.s->lport;
    u16 lport = known ? w.s->lport : rd_u16(sk, TTE_OFF_SKC_NUM);
    u16 rport = known ? w.s->rport : bpf_ntohs(rd_u16(sk, TTE_OFF_SKC_DPORT));
    if (not_ours(w.pid, w.comm, w.netns, lport, rport, w.s))
        return 0;
    if (err < 160)
        stat_inc(TTE_STAT_ABORT_BASE + err);
    struct tte_record *r = emit_begin(TTE_REC_ABORT, key, w.s, rd_u8(sk, TTE_OFF_SKC_STATE), -1, err, now, w.pid, w.comm,
                                      family, w.s ? w.s->raddr : 0, service_port(w.s, lport, rport));
    if (!r)
        return 0;
    tuple_from_sk(r, sk);
    r->netns = w.netns;
    r->ino = w.ino;
    r->flags = flags_from_sk(sk);
    fill_owner(r, w.s, w.io);
    read_tcp_fields(r, sk, now);
    mark_notable(w.s);
    submit(r);
    return 0;
}

/* ---------------------------------------------------------------- fallback I/O hooks */
#if TTE_IO_HOOKS
/* sock:sock_send_length / sock_recv_length: Linux 6.3+ (bpf/compat.bpf.h).
 * Only for kernels without BTF, where the socket's own timestamps cannot be read: every
 * application send/recv updates the table (measurably costly on busy services). */
static __always_inline void io_touch(const void *sk, int is_send)
{
    u64 key = (u64)sk;
    u64 now = bpf_ktime_get_ns();
    struct tte_sock *s = socks.lookup(&key);
    if (!s) {
        struct tte_sock fresh = {};
        fresh.birth_ns = 0; /* predates the tracer */
        capture_owner(&fresh, TTE_OWNER_IO);
        if (filtered_out(fresh.pid, fresh.comm, 0, 0, 0, 0))
            return;
        fresh.state = TTE_TCP_ESTABLISHED;
        socks.update(&key, &fresh);
        s = socks.lookup(&key);
        if (!s)
            return;
    } else if (s->owner_src != TTE_OWNER_IO && s->owner_src != TTE_OWNER_CONNECT) {
        capture_owner(s, TTE_OWNER_IO);
    }
    if (is_send)
        s->last_send_ns = now;
    else
        s->last_recv_ns = now;
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
    if (args->protocol == TTE_IPPROTO_TCP && args->ret > 0)
        io_touch(args->sk, 1);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    if (args->protocol == TTE_IPPROTO_TCP && args->ret > 0)
        io_touch(args->sk, 0);
    return 0;
}
#endif
