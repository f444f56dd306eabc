/* tcptrace-explain kernel side (BCC): capture every TCP reset and abort with its socket's
 * context, and only those, so the cost grows with the reset rate and not with traffic.
 *
 * Hooks: tracepoints only (this project's kernels have no kprobes).
 *   sock:inet_sock_set_state  keeps the per-socket table (owner, birth, FIN, close times)
 *   tcp:tcp_send_reset        -> TTE_REC_RESET_SENT
 *   tcp:tcp_receive_reset     -> TTE_REC_RESET_RECEIVED
 *   inet_sk_error_report (raw tracepoint: argument 0 is the struct sock *) -> TTE_REC_ABORT
 *   tcp:tcp_destroy_sock      ends a table entry; keeps a copy keyed by 4-tuple for late resets
 *   tcp:tcp_retransmit_skb    counts retransmits per socket
 *   sock:sock_send_length / sock_recv_length  only with TTE_IO_HOOKS (kernels without BTF)
 *
 * Kernel structs are never dereferenced through compiler-known layouts: the installed headers
 * may belong to another kernel. Every field is read with bpf_probe_read_kernel at an offset the
 * loader took from the running kernel's BTF and passed as a TTE_OFF_* constant.
 *
 * Compile-time configuration comes from tracer/program.py as -D constants; the #ifndef
 * defaults below only let this file compile on its own.
 */
#include <uapi/linux/ptrace.h>
#include "tte.h"

/* tcp_send_reset's reason field is declared as `enum sk_rst_reason`, which older headers do not
 * know. BCC pastes the field declaration from the tracepoint format, so rename the enum to one
 * declared here (4 bytes, like the kernel's). */
#define sk_rst_reason tte_sk_rst_reason
enum tte_sk_rst_reason { TTE_RST_REASON_PLACEHOLDER = 0 };

#ifndef TTE_MAX_SOCKS
#define TTE_MAX_SOCKS 65536
#endif
#ifndef TTE_MAX_CLOSED
#define TTE_MAX_CLOSED 16384
#endif
#ifndef TTE_MAX_LISTENERS
#define TTE_MAX_LISTENERS 4096
#endif
#ifndef TTE_MAX_INODES
#define TTE_MAX_INODES 65536
#endif
#ifndef TTE_MAX_FILTER
#define TTE_MAX_FILTER 256
#endif
#ifndef TTE_RINGBUF_PAGES
#define TTE_RINGBUF_PAGES 256
#endif
#ifndef TTE_WAKEUP_EVERY
#define TTE_WAKEUP_EVERY 32
#endif
#ifndef TTE_NSEC_PER_JIFFY
#define TTE_NSEC_PER_JIFFY 4000000ULL
#endif
#ifndef TTE_STORM_LIMIT
#define TTE_STORM_LIMIT 5000 /* full records per CPU per second; the rest are counted, summarized */
#endif
#ifndef TTE_STORM_SAMPLE
#define TTE_STORM_SAMPLE 50  /* full records per CPU per second while in a storm */
#endif
/* The rate is judged over 100 ms windows, so a storm is caught within 100 ms; the budgets
 * above are per second and are split evenly over the windows. */
#define TTE_STORM_WINDOW_NS 100000000ULL
#define TTE_STORM_WINDOWS_PER_S 10
#ifndef TTE_MAX_STORM_KEYS
#define TTE_MAX_STORM_KEYS 2048
#endif
#ifndef TTE_EMIT_STATES
#define TTE_EMIT_STATES 0
#endif
#ifndef TTE_FILTER_PID
#define TTE_FILTER_PID 0
#endif
#ifndef TTE_FILTER_PORT
#define TTE_FILTER_PORT 0
#endif
#ifndef TTE_FILTER_NETNS
#define TTE_FILTER_NETNS 0
#endif
#ifndef TTE_FILTER_COMM
#define TTE_FILTER_COMM 0
#endif

/* TCP states, from the inet_sock_set_state format's symbol table (defaults: include/net/tcp_states.h). */
#ifndef TTE_TCP_ESTABLISHED
#define TTE_TCP_ESTABLISHED 1
#define TTE_TCP_SYN_SENT 2
#define TTE_TCP_SYN_RECV 3
#define TTE_TCP_FIN_WAIT1 4
#define TTE_TCP_FIN_WAIT2 5
#define TTE_TCP_TIME_WAIT 6
#define TTE_TCP_CLOSE 7
#define TTE_TCP_CLOSE_WAIT 8
#define TTE_TCP_LAST_ACK 9
#define TTE_TCP_LISTEN 10
#define TTE_TCP_CLOSING 11
#define TTE_TCP_NEW_SYN_RECV 12
#endif

/* Bits of enum sock_flags (from BTF). */
#ifndef TTE_SOCK_DEAD
#define TTE_SOCK_DEAD 0
#define TTE_SOCK_DONE 1
#define TTE_SOCK_KEEPOPEN 3
#define TTE_SOCK_LINGER 4
#endif

/* Field offsets from BTF. Zero defaults only make the file compile; the loader always sets them. */
#ifndef TTE_OFF_SKC_FAMILY
#define TTE_OFF_SKC_FAMILY 0
#define TTE_OFF_SKC_STATE 0
#define TTE_OFF_SKC_NUM 0
#define TTE_OFF_SKC_DPORT 0
#define TTE_OFF_SKC_DADDR 0
#define TTE_OFF_SKC_RCV_SADDR 0
#define TTE_OFF_SKC_V6_DADDR 0
#define TTE_OFF_SKC_V6_RCV_SADDR 0
#define TTE_OFF_SKC_NET 0
#define TTE_OFF_NET_INUM 0
#define TTE_OFF_SK_FLAGS 0
#define TTE_OFF_SK_ERR 0
#define TTE_OFF_SK_PROTOCOL 0
#define TTE_OFF_SK_TYPE 0
#define TTE_OFF_SK_SOCKET 0
#define TTE_OFF_SOCKALLOC_INO 0
#define TTE_OFF_TP_LSNDTIME 0
#define TTE_OFF_TP_RCV_TSTAMP 0
#define TTE_OFF_TP_LRCVTIME 0
#define TTE_OFF_TP_SRTT_US 0
#define TTE_OFF_TP_TOTAL_RETRANS 0
#define TTE_OFF_TP_RCV_NXT 0
#define TTE_OFF_TP_COPIED_SEQ 0
#define TTE_OFF_TP_WRITE_SEQ 0
#define TTE_OFF_TP_SND_UNA 0
#define TTE_OFF_TASK_GROUP_LEADER 0
#define TTE_OFF_TASK_COMM 0
#define TTE_OFF_SKB_DEV 0
#define TTE_OFF_NETDEV_NET 0
#define TTE_OFF_SKB_HEAD 0
#define TTE_OFF_SKB_NETWORK_HEADER 0
#define TTE_OFF_SKB_TRANSPORT_HEADER 0
#endif

/* The decoder's idea of the layout (tracer/record.py); a mismatch fails the compile. */
#ifdef TTE_EXPECT_RECORD_SIZE
_Static_assert(sizeof(struct tte_record) == TTE_EXPECT_RECORD_SIZE, "tte_record size drifted from tracer/record.py");
_Static_assert(__builtin_offsetof(struct tte_record, birth_ns) == TTE_EXPECT_OFF_BIRTH, "tte_record layout drifted");
_Static_assert(__builtin_offsetof(struct tte_record, owner_src) == TTE_EXPECT_OFF_OWNER_SRC, "tte_record layout drifted");
#endif

#define TTE_AF_INET 2
#define TTE_AF_INET6 10
#define TTE_IPPROTO_TCP 6

/* What the table knows of one socket. */
struct tte_sock {
    u64 birth_ns;
    u64 estab_ns;
    u64 fin_ns;
    u64 close_ns;
    u64 state_ns;
    u64 last_send_ns; /* TTE_IO_HOOKS only; with BTF the socket's own timestamps are used */
    u64 last_recv_ns;
    /* Activity before the peer's FIN, snapshot at -> CLOSE_WAIT: a later write overwrites
     * lsndtime, and this gap is what tells a client's read timeout or a server's keep-alive. */
    u64 fin_last_send_ns;
    u64 fin_last_recv_ns;
    u32 pid;
    u32 retrans;
    u32 netns;
    u8 state;
    u8 owner_src;
    u8 opened; /* TTE_F_CONNECTED or TTE_F_ACCEPTED >> 8: how the connection began, kept when
                * the owner is refreshed at close */
    u8 _pad1;
    /* The 4-tuple, from state-change arguments: tcp_done() unhashes the socket (clearing its
     * local port) before the error report runs, so the socket itself no longer has it. */
    u16 family;
    u16 lport;
    u16 rport;
    u8 laddr[16];
    u8 raddr[16];
    char comm[TTE_COMM_LEN];
    char thread[TTE_COMM_LEN];
};

/* A destroyed connection, kept so a reset sent later for its 4-tuple (by the timewait socket
 * that replaced it, or with no socket at all) still finds its owner and history. */
struct tte_tuple {
    u32 netns;
    u16 family;
    u16 lport;
    u16 rport;
    u16 _pad;
    u8 laddr[16];
    u8 raddr[16];
};

struct tte_closed {
    struct tte_sock sock;
    u64 destroy_ns;
    u64 last_send_ns;
    u64 last_recv_ns;
    u64 last_ack_ns;
    u32 flags;
    u32 srtt_us;
    u32 total_retrans;
    u32 _pad;
};

/* Owner of a socket inode, preloaded by user space from /proc/<pid>/fd at start-up so that
 * connections opened before the tracer started still have an owner. */
struct tte_owner {
    u32 pid;
    u32 _pad;
    char comm[TTE_COMM_LEN];
};

/* socks: the per-socket table, keyed by the kernel socket address.
 *   insert: inet_sock_set_state on connect (CLOSE->SYN_SENT), listen (->LISTEN) and an accepted
 *           child's clone (LISTEN->SYN_RECV); with TTE_IO_HOOKS also on first I/O.
 *   update: later state changes, retransmits.
 *   delete: tcp:tcp_destroy_sock (the address may be reused by the next allocation).
 *   read:   every record.
 * Bounded: LRU of TTE_MAX_SOCKS; an entry whose destroy we missed ages out. */
BPF_TABLE("lru_hash", u64, struct tte_sock, socks, TTE_MAX_SOCKS);

/* closed: recently destroyed connections that closed first locally (they leave the timewait
 * socket that answers late data with an RST), keyed by netns + 4-tuple.
 *   insert: tcp:tcp_destroy_sock.  read: tcp_send_reset from a timewait socket or with no
 *   socket.  delete: never explicitly; LRU of TTE_MAX_CLOSED keeps the most recent closes, which
 *   covers a timewait's 60 s lifetime at up to TTE_MAX_CLOSED/60 closes per second. */
BPF_TABLE("lru_hash", struct tte_tuple, struct tte_closed, closed, TTE_MAX_CLOSED);

/* listeners: (netns << 16 | port) -> the owner of the listening socket, so an accepted child
 * (cloned in softirq, in whatever task ran it) inherits its server's owner.
 * insert: ->LISTEN, and user space at start-up for listeners that predate the tracer;
 * delete: LISTEN->CLOSE by the same owner (another process may listen on the port with
 * SO_REUSEPORT, e.g. across a reload); LRU bounded. */
struct tte_listener {
    u32 pid;
    u32 _pad;
    char comm[TTE_COMM_LEN];
    char thread[TTE_COMM_LEN];
};
BPF_TABLE("lru_hash", u64, struct tte_listener, listeners, TTE_MAX_LISTENERS);

/* active_closes: connections closed first by this host (ESTABLISHED -> FIN_WAIT1), per owner
 * and remote endpoint. The closer holds the TIME_WAIT socket for 60 s, so the rate of these is
 * the TIME_WAIT population. insert/update: the close path of inet_sock_set_state; read: user
 * space at scrape or poll time; never deleted: LRU of TTE_MAX_CLOSERS keeps the active ones. */
#ifndef TTE_MAX_CLOSERS
#define TTE_MAX_CLOSERS 4096
#endif
struct tte_closer_key {
    u32 pid;
    u16 family;
    u16 rport;
    u8 raddr[16];
};
struct tte_closer {
    u64 count;
    char comm[TTE_COMM_LEN];
};
BPF_TABLE("lru_hash", struct tte_closer_key, struct tte_closer, active_closes, TTE_MAX_CLOSERS);

/* inode_owners: socket inode -> owner, filled once by user space at start-up; read when the
 * socket table has no entry. Bounded by TTE_MAX_INODES (user space stops filling at the bound). */
BPF_HASH(inode_owners, u64, struct tte_owner, TTE_MAX_INODES);

/* Filters, filled by user space before the first event; only compiled in when used. */
BPF_HASH(filter_pids, u32, u8, TTE_MAX_FILTER);
BPF_HASH(filter_ports, u16, u8, TTE_MAX_FILTER);
BPF_HASH(filter_netns, u32, u8, TTE_MAX_FILTER);
struct tte_comm_key { char comm[TTE_COMM_LEN]; };
BPF_HASH(filter_comms, struct tte_comm_key, u8, TTE_MAX_FILTER);

/* stats: per-CPU counters (TTE_STAT_*), summed by user space; loss is counted here. */
BPF_PERCPU_ARRAY(stats, u64, TTE_STAT_MAX);
/* wakeups: per-CPU record count, to wake the consumer once per TTE_WAKEUP_EVERY records
 * instead of once per record (user space also polls with a short timeout). */
BPF_PERCPU_ARRAY(wakeups, u64, 1);
/* scratch: per-CPU staging for the closed-table value (too big for the 512-byte stack). */
BPF_PERCPU_ARRAY(scratch, struct tte_closed, 1);

/* storm: events beyond TTE_STORM_LIMIT per CPU per second, counted per summary key instead of
 * sent one by one. insert/update: admit(); read and delete: user space once a second (lookup
 * and delete in a batch). Bounded by TTE_MAX_STORM_KEYS; an event that finds it full counts as
 * lost, never silently dropped. */
BPF_HASH(storm, struct tte_storm_key, u64, TTE_MAX_STORM_KEYS);
struct tte_rate {
    u64 window_ns;
    u64 count;     /* full records sent in this window */
    u64 seen;      /* events in this window, sent or counted */
    u64 prev_seen; /* events in the previous window */
};
/* rate: per-CPU event counts in 100 ms windows. A CPU whose previous window exceeded its share
 * of TTE_STORM_LIMIT events is in a storm: it sends only TTE_STORM_SAMPLE full records per second
 * and counts the rest, so user space costs almost nothing while the storm lasts. */
BPF_PERCPU_ARRAY(rate, struct tte_rate, 1);

BPF_RINGBUF_OUTPUT(events, TTE_RINGBUF_PAGES);

static __always_inline void stat_inc(u32 idx)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        (*v)++;
}

/* The two addresses of a tracepoint of the sock/tcp event classes (saddr/daddr for IPv4,
 * saddr_v6/daddr_v6 for IPv6) into LADDR/RADDR; a macro because each tracepoint has its own
 * args struct. */
#define ADDRS_FROM_ARGS(family, laddr, raddr)                                      \
    do {                                                                           \
        if ((family) == TTE_AF_INET6) {                                            \
            __builtin_memcpy(laddr, args->saddr_v6, 16);                           \
            __builtin_memcpy(raddr, args->daddr_v6, 16);                           \
        } else {                                                                   \
            __builtin_memcpy(laddr, args->saddr, 4);                               \
            __builtin_memcpy(raddr, args->daddr, 4);                               \
        }                                                                          \
    } while (0)

/* A kernel field of type T at byte offset OFF from BASE (0 if the read faults). */
#define RD(T, base, off)                                                           \
    ({                                                                             \
        T __v = 0;                                                                 \
        bpf_probe_read_kernel(&__v, sizeof(__v), (const char *)(base) + (off));    \
        __v;                                                                       \
    })
#define rd_u8(base, off) RD(u8, base, off)
#define rd_u16(base, off) RD(u16, base, off)
#define rd_u32(base, off) RD(u32, base, off)
#define rd_u64(base, off) RD(u64, base, off)

static __always_inline u32 sk_netns(const void *sk)
{
    const void *net = (const void *)rd_u64(sk, TTE_OFF_SKC_NET);
    return net ? rd_u32(net, TTE_OFF_NET_INUM) : 0;
}

static __always_inline u64 sk_flag_bits(const void *sk)
{
    return rd_u64(sk, TTE_OFF_SK_FLAGS);
}

static __always_inline u32 flags_from_sk(const void *sk)
{
    u64 f = sk_flag_bits(sk);
    u32 out = 0;
    if (f & (1ULL << TTE_SOCK_DEAD))
        out |= TTE_F_ORPHAN;
    if (f & (1ULL << TTE_SOCK_DONE))
        out |= TTE_F_PEER_FIN;
    if (f & (1ULL << TTE_SOCK_KEEPOPEN))
        out |= TTE_F_KEEPALIVE;
    if (f & (1ULL << TTE_SOCK_LINGER))
        out |= TTE_F_LINGER;
    return out;
}

/* The current task as an owner: thread-group id, its leader's name, the thread's name. Only
 * called from hooks that run in the owner's own syscall (connect, listen, close, I/O). */
static __always_inline void capture_owner(struct tte_sock *s, u8 src)
{
    s->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(s->thread, sizeof(s->thread));
    const void *task = (const void *)bpf_get_current_task();
    const void *leader = (const void *)rd_u64(task, TTE_OFF_TASK_GROUP_LEADER);
    if (leader)
        bpf_probe_read_kernel(s->comm, sizeof(s->comm), (const char *)leader + TTE_OFF_TASK_COMM);
    s->owner_src = src;
}

/* Socket inode (the number /proc/<pid>/fd/N -> socket:[N] shows), 0 for orphans. */
static __always_inline u64 sk_inode(const void *sk)
{
    const void *sock = (const void *)rd_u64(sk, TTE_OFF_SK_SOCKET);
    return sock ? rd_u64(sock, TTE_OFF_SOCKALLOC_INO) : 0;
}

/* tcp_jiffies32 timestamp -> CLOCK_MONOTONIC ns (0 when unset or implausible). */
static __always_inline u64 jiffies_to_ns(u32 then, u32 now_j, u64 now_ns)
{
    u32 d = now_j - then;
    if (then == 0 || d > 0x7fffffffU)
        return 0;
    u64 dns = (u64)d * TTE_NSEC_PER_JIFFY;
    return dns < now_ns ? now_ns - dns : 0;
}

static __always_inline int full_tcp_state(int state)
{
    return state != TTE_TCP_LISTEN && state != TTE_TCP_TIME_WAIT && state != TTE_TCP_NEW_SYN_RECV &&
           state != 0;
}

/* Timestamps and queue sizes the kernel keeps in every tcp_sock: idle time without any
 * per-I/O hook. Only for full sockets (a timewait sock is smaller than a tcp_sock). */
static __always_inline void read_tcp_fields(struct tte_record *r, const void *sk, u64 now_ns)
{
    u32 now_j = (u32)bpf_jiffies64();
    r->last_send_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LSNDTIME), now_j, now_ns);
    r->last_recv_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LRCVTIME), now_j, now_ns);
    r->last_ack_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_RCV_TSTAMP), now_j, now_ns);
    r->srtt_us = rd_u32(sk, TTE_OFF_TP_SRTT_US) >> 3;
    r->total_retrans = rd_u32(sk, TTE_OFF_TP_TOTAL_RETRANS);
    r->unread_bytes = rd_u32(sk, TTE_OFF_TP_RCV_NXT) - rd_u32(sk, TTE_OFF_TP_COPIED_SEQ);
    r->unacked_bytes = rd_u32(sk, TTE_OFF_TP_WRITE_SEQ) - rd_u32(sk, TTE_OFF_TP_SND_UNA);
    r->flags |= TTE_F_TCP_FIELDS;
}

/* 4-tuple from the socket itself (sock_common: valid for full and timewait sockets). */
static __always_inline void tuple_from_sk(struct tte_record *r, const void *sk)
{
    r->family = rd_u16(sk, TTE_OFF_SKC_FAMILY);
    r->lport = rd_u16(sk, TTE_OFF_SKC_NUM);
    r->rport = bpf_ntohs(rd_u16(sk, TTE_OFF_SKC_DPORT));
    if (r->family == TTE_AF_INET6) {
        bpf_probe_read_kernel(r->laddr, 16, (const char *)sk + TTE_OFF_SKC_V6_RCV_SADDR);
        bpf_probe_read_kernel(r->raddr, 16, (const char *)sk + TTE_OFF_SKC_V6_DADDR);
    } else {
        bpf_probe_read_kernel(r->laddr, 4, (const char *)sk + TTE_OFF_SKC_RCV_SADDR);
        bpf_probe_read_kernel(r->raddr, 4, (const char *)sk + TTE_OFF_SKC_DADDR);
    }
}

/* The table's tuple, when the socket's own has been cleared by unhashing. */
static __always_inline void tuple_from_table(struct tte_record *r, const struct tte_sock *s)
{
    if (r->lport || !s->lport)
        return;
    r->family = s->family;
    r->lport = s->lport;
    r->rport = s->rport;
    __builtin_memcpy(r->laddr, s->laddr, 16);
    __builtin_memcpy(r->raddr, s->raddr, 16);
}

static __always_inline int v4mapped(const u8 *a)
{
    /* ::ffff:0:0/96, read as words: a byte loop multiplies the verifier's states */
    u32 w0, w1, w2;
    __builtin_memcpy(&w0, a, 4);
    __builtin_memcpy(&w1, a + 4, 4);
    __builtin_memcpy(&w2, a + 8, 4);
    return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff);
}

/* A dual-stack (AF_INET6) socket carrying IPv4 reports ::ffff:a.b.c.d addresses, while a
 * segment-derived tuple (timewait, no socket) is plain AF_INET: key both the IPv4 way. */
static __always_inline void tuple_unmap(struct tte_tuple *t)
{
    if (t->family != TTE_AF_INET6 || !v4mapped(t->laddr) || !v4mapped(t->raddr))
        return;
    u8 l[4], r[4];
    __builtin_memcpy(l, t->laddr + 12, 4);
    __builtin_memcpy(r, t->raddr + 12, 4);
    __builtin_memset(t->laddr, 0, 16);
    __builtin_memset(t->raddr, 0, 16);
    __builtin_memcpy(t->laddr, l, 4);
    __builtin_memcpy(t->raddr, r, 4);
    t->family = TTE_AF_INET;
}

static __always_inline void copy_sock(struct tte_record *r, const struct tte_sock *s)
{
    r->flags |= (u32)s->opened << 8;
    r->pid = s->pid;
    r->owner_src = s->owner_src;
    __builtin_memcpy(r->comm, s->comm, TTE_COMM_LEN);
    __builtin_memcpy(r->thread, s->thread, TTE_COMM_LEN);
    r->birth_ns = s->birth_ns;
    r->estab_ns = s->estab_ns;
    r->fin_ns = s->fin_ns;
    r->close_ns = s->close_ns;
    r->state_ns = s->state_ns;
    r->retrans = s->retrans;
    r->fin_last_send_ns = s->fin_last_send_ns;
    r->fin_last_recv_ns = s->fin_last_recv_ns;
    if (s->last_send_ns)
        r->last_send_ns = s->last_send_ns;
    if (s->last_recv_ns)
        r->last_recv_ns = s->last_recv_ns;
}

/* The record's owner: the socket table's entry, else the owner preloaded for its inode. */
static __always_inline void fill_owner(struct tte_record *r, const struct tte_sock *s, const struct tte_owner *io)
{
    if (s) {
        r->flags |= TTE_F_SOCK_KNOWN;
        tuple_from_table(r, s);
        copy_sock(r, s);
    } else if (io) {
        r->pid = io->pid;
        __builtin_memcpy(r->comm, io->comm, TTE_COMM_LEN);
        r->owner_src = TTE_OWNER_INODE;
    }
}

/* Who owns this socket, for the filters: the table, else the inode table from start-up. */
static __always_inline u32 owner_of(const struct tte_sock *s, u64 ino, struct tte_owner **io)
{
    if (s && s->pid)
        return s->pid;
    if (ino) {
        struct tte_owner *o = inode_owners.lookup(&ino);
        if (o) {
            *io = o;
            return o->pid;
        }
    }
    return 0;
}

static __always_inline int filtered_out(u32 pid, const char *comm, u32 netns, u16 lport, u16 rport)
{
#if TTE_FILTER_PID
    if (!pid || !filter_pids.lookup(&pid))
        return 1;
#endif
#if TTE_FILTER_COMM
    struct tte_comm_key ck = {};
    if (comm)
        __builtin_memcpy(ck.comm, comm, TTE_COMM_LEN);
    if (!filter_comms.lookup(&ck))
        return 1;
#endif
#if TTE_FILTER_PORT
    if (!filter_ports.lookup(&lport) && !filter_ports.lookup(&rport))
        return 1;
#endif
#if TTE_FILTER_NETNS
    if (!filter_netns.lookup(&netns))
        return 1;
#endif
    return 0;
}

/* Whether this event may go out as a full record. Beyond the per-CPU rate it is counted in the
 * storm map under its summary key, so a reset storm costs a hash update per event, not a trip
 * through user space, and is still shown (summarized) and counted. */
static __always_inline int admit(u8 type, u8 state, s32 reason, s32 err, u32 pid, const char *comm,
                                 u16 family, const u8 *raddr, u16 port)
{
    u32 zero = 0;
    struct tte_rate *rt = rate.lookup(&zero);
    if (!rt)
        return 1;
    u64 now = bpf_ktime_get_ns();
    if (now - rt->window_ns >= TTE_STORM_WINDOW_NS) {
        /* a window that ended long ago (idle CPU) says nothing about now */
        rt->prev_seen = now - rt->window_ns < 2 * TTE_STORM_WINDOW_NS ? rt->seen : 0;
        rt->window_ns = now;
        rt->count = 0;
        rt->seen = 0;
    }
    rt->seen++;
    u64 limit = rt->prev_seen > TTE_STORM_LIMIT / TTE_STORM_WINDOWS_PER_S
                    ? (TTE_STORM_SAMPLE + TTE_STORM_WINDOWS_PER_S - 1) / TTE_STORM_WINDOWS_PER_S
                    : TTE_STORM_LIMIT / TTE_STORM_WINDOWS_PER_S;
    if (rt->count < limit) {
        rt->count++;
        return 1;
    }
    struct tte_storm_key k = {};
    k.type = type;
    k.state = state;
    k.family = family;
    k.reason = reason;
    k.err = err;
    k.pid = pid;
    k.port = port;
    if (raddr)
        __builtin_memcpy(k.raddr, raddr, 16);
    if (comm)
        __builtin_memcpy(k.comm, comm, TTE_COMM_LEN);
    u64 *v = storm.lookup(&k);
    if (v) {
        __sync_fetch_and_add(v, 1);
    } else {
        u64 one = 1;
        if (storm.insert(&k, &one)) {
            v = storm.lookup(&k);   /* another CPU inserted it first */
            if (v)
                __sync_fetch_and_add(v, 1);
            else {
                stat_inc(TTE_STAT_STORM_FULL); /* the summary table is full */
                return 0;
            }
        }
    }
    stat_inc(TTE_STAT_SUMMARIZED);
    return 0;
}

static __always_inline u16 service_port(const struct tte_sock *s, u16 lport, u16 rport)
{
    if (s && (s->opened << 8) == TTE_F_ACCEPTED)
        return lport;
    if (s && (s->opened << 8) == TTE_F_CONNECTED)
        return rport;
    return lport < rport ? lport : rport;
}

static __always_inline struct tte_record *reserve(void)
{
    struct tte_record *r = events.ringbuf_reserve(sizeof(struct tte_record));
    if (!r) {
        stat_inc(TTE_STAT_LOST);
        return 0;
    }
    __builtin_memset(r, 0, sizeof(*r));
    return r;
}

static __always_inline void submit(struct tte_record *r)
{
    u32 zero = 0;
    u64 flags = BPF_RB_NO_WAKEUP;
    u64 *n = wakeups.lookup(&zero);
    if (n) {
        (*n)++;
        if (*n % TTE_WAKEUP_EVERY == 0)
            flags = BPF_RB_FORCE_WAKEUP;
    }
    stat_inc(TTE_STAT_RECORDS);
    events.ringbuf_submit(r, flags);
}

static __always_inline void stamp_current(struct tte_record *r, u64 now)
{
    r->ts_ns = now;
    r->cur_pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(r->cur_comm, sizeof(r->cur_comm));
}

static __always_inline void count_active_close(const struct tte_sock *s)
{
    struct tte_closer_key k = {};
    k.pid = s->pid;
    k.family = s->family;
    k.rport = s->rport;
    __builtin_memcpy(k.raddr, s->raddr, 16);
    struct tte_closer *c = active_closes.lookup(&k);
    if (c) {
        __sync_fetch_and_add(&c->count, 1);
        return;
    }
    struct tte_closer fresh = {};
    fresh.count = 1;
    __builtin_memcpy(fresh.comm, s->comm, TTE_COMM_LEN);
    active_closes.update(&k, &fresh);
}

/* ---------------------------------------------------------------- state changes ---- */

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != TTE_IPPROTO_TCP)
        return 0;
    u64 key = (u64)args->skaddr;
    const void *sk = (const void *)args->skaddr;
    int os = args->oldstate, ns = args->newstate;
    u64 now = bpf_ktime_get_ns();
    struct tte_sock *s = socks.lookup(&key);

    if ((os == TTE_TCP_CLOSE && (ns == TTE_TCP_SYN_SENT || ns == TTE_TCP_LISTEN)) ||
        (os == TTE_TCP_LISTEN && ns == TTE_TCP_SYN_RECV)) {
        /* A new socket (its address may be a reused one: start afresh). */
        struct tte_sock fresh = {};
        fresh.birth_ns = now;
        fresh.netns = sk_netns(sk);
        if (os == TTE_TCP_LISTEN) {
            /* Accepted child: softirq, possibly in an unrelated task. Inherit the listener's owner. */
            u64 lkey = ((u64)fresh.netns << 16) | args->sport;
            struct tte_listener *ls = listeners.lookup(&lkey);
            fresh.opened = TTE_F_ACCEPTED >> 8;
            if (ls) {
                fresh.pid = ls->pid;
                __builtin_memcpy(fresh.comm, ls->comm, TTE_COMM_LEN);
                __builtin_memcpy(fresh.thread, ls->thread, TTE_COMM_LEN);
                fresh.owner_src = TTE_OWNER_LISTENER;
            }
        } else {
            capture_owner(&fresh, ns == TTE_TCP_LISTEN ? TTE_OWNER_LISTEN : TTE_OWNER_CONNECT);
            if (ns == TTE_TCP_SYN_SENT)
                fresh.opened = TTE_F_CONNECTED >> 8;
        }
        if (filtered_out(fresh.pid, fresh.comm, fresh.netns, args->sport, args->dport))
            return 0; /* not ours: keep neither the entry nor its cost */
        if (ns == TTE_TCP_LISTEN) {
            u64 lkey = ((u64)fresh.netns << 16) | args->sport;
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
        s = socks.lookup(&key);
        if (!s)
            return 0;
    } else if (!s && (ns == TTE_TCP_FIN_WAIT1 || (os == TTE_TCP_CLOSE_WAIT && ns == TTE_TCP_LAST_ACK))) {
        /* A socket that predates the tracer, closed by its owner (close() runs in the owner's
         * syscall): from here on it has an owner, and its timewait history can be kept. */
        struct tte_sock fresh = {};
        fresh.netns = sk_netns(sk);
        capture_owner(&fresh, TTE_OWNER_CLOSE);
        if (filtered_out(fresh.pid, fresh.comm, fresh.netns, args->sport, args->dport))
            return 0;
        fresh.state = ns;
        fresh.state_ns = now;
        fresh.close_ns = now;
        fresh.family = args->family;
        fresh.lport = args->sport;
        fresh.rport = args->dport;
        ADDRS_FROM_ARGS(args->family, fresh.laddr, fresh.raddr);
        socks.update(&key, &fresh);
        stat_inc(TTE_STAT_SOCKS_INSERT);
        if (os == TTE_TCP_ESTABLISHED)
            count_active_close(&fresh);
        return 0;
    } else if (!s) {
#if TTE_EMIT_STATES && !TTE_FILTER_PID && !TTE_FILTER_COMM
        /* A socket that predates the tracer: report the change with what the event itself has. */
        if (filtered_out(0, 0, sk_netns(sk), args->sport, args->dport))
            return 0;
        if (!admit(TTE_REC_STATE, ns, -1, 0, 0, 0, args->family, 0, args->sport))
            return 0;
        struct tte_record *r = reserve();
        if (!r)
            return 0;
        stamp_current(r, now);
        r->type = TTE_REC_STATE;
        r->skaddr = key;
        r->state = ns;
        r->old_state = os;
        tuple_from_sk(r, sk);
        r->netns = sk_netns(sk);
        r->reason = -1;
        submit(r);
#endif
        return 0;
    } else {
        if (args->sport) {
            s->family = args->family;
            s->lport = args->sport;
            s->rport = args->dport;
            ADDRS_FROM_ARGS(args->family, s->laddr, s->raddr);
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
            capture_owner(s, TTE_OWNER_CLOSE);
            if (os == TTE_TCP_ESTABLISHED)
                count_active_close(s);
        }
        if (os == TTE_TCP_LISTEN && ns == TTE_TCP_CLOSE) {
            u64 lkey = ((u64)s->netns << 16) | args->sport;
            struct tte_listener *l = listeners.lookup(&lkey);
            if (l && l->pid == s->pid)
                listeners.delete(&lkey);
        }
    }

    if (os >= 0 && os < 16 && ns >= 0 && ns < 16)
        stat_inc(TTE_STAT_STATE_BASE + os * 16 + ns);

#if TTE_EMIT_STATES
    if (!admit(TTE_REC_STATE, ns, -1, 0, s->pid, s->comm, s->family, s->raddr, args->sport))
        return 0;
    struct tte_record *r = reserve();
    if (!r)
        return 0;
    stamp_current(r, now);
    r->type = TTE_REC_STATE;
    r->skaddr = key;
    r->state = ns;
    r->old_state = os;
    r->reason = -1;
    tuple_from_sk(r, sk);
    r->netns = s->netns;
    copy_sock(r, s);
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
    /* Keep the history of a connection this side closed first: its timewait socket may still
     * answer the peer's late data with an RST, which only a 4-tuple can join back to it. */
    if (s->close_ns && (!s->fin_ns || s->close_ns < s->fin_ns) && args->dport != 0) {
        u32 zero = 0;
        struct tte_closed *c = scratch.lookup(&zero);
        if (c) {
            const void *sk = (const void *)args->skaddr;
            u64 now = bpf_ktime_get_ns();
            u32 now_j = (u32)bpf_jiffies64();
            struct tte_tuple t = {};
            t.netns = s->netns;
            t.family = args->family;
            t.lport = args->sport;
            t.rport = args->dport;
            ADDRS_FROM_ARGS(args->family, t.laddr, t.raddr);
            tuple_unmap(&t);
            __builtin_memcpy(&c->sock, s, sizeof(c->sock));
            c->destroy_ns = now;
            c->last_send_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LSNDTIME), now_j, now);
            c->last_recv_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_LRCVTIME), now_j, now);
            c->last_ack_ns = jiffies_to_ns(rd_u32(sk, TTE_OFF_TP_RCV_TSTAMP), now_j, now);
            c->srtt_us = rd_u32(sk, TTE_OFF_TP_SRTT_US) >> 3;
            c->total_retrans = rd_u32(sk, TTE_OFF_TP_TOTAL_RETRANS);
            c->flags = flags_from_sk(sk);
            closed.update(&t, c);
            stat_inc(TTE_STAT_CLOSED_INSERT);
        }
    }
    socks.delete(&key);
    stat_inc(TTE_STAT_SOCKS_DELETE);
    return 0;
}

/* ---------------------------------------------------------------- resets ----------- */

static __always_inline void fill_from_closed(struct tte_record *r, const struct tte_closed *c)
{
    copy_sock(r, &c->sock);
    r->destroy_ns = c->destroy_ns;
    r->last_send_ns = c->last_send_ns;
    r->last_recv_ns = c->last_recv_ns;
    r->last_ack_ns = c->last_ack_ns;
    r->srtt_us = c->srtt_us;
    r->total_retrans = c->total_retrans;
    r->flags |= TTE_F_FROM_CLOSED | (c->flags & (TTE_F_PEER_FIN | TTE_F_KEEPALIVE | TTE_F_LINGER));
}

/* The remote end of the segment a listener answered: the tracepoint takes addresses from the
 * listening socket, whose remote end is 0.0.0.0:0, so read the incoming IP and TCP headers. */
/* TCP flags byte of the segment (tcphdr byte 13), 0 if the headers are not set. */
static __always_inline u8 segment_flags(const void *skb)
{
    const u8 *head = (const u8 *)rd_u64(skb, TTE_OFF_SKB_HEAD);
    u16 th = rd_u16(skb, TTE_OFF_SKB_TRANSPORT_HEADER);
    if (!head || th == 0xffff)
        return 0;
    return rd_u8(head, th + 13);
}

static __always_inline void remote_from_skb(struct tte_tuple *t, const void *skb)
{
    const u8 *head = (const u8 *)rd_u64(skb, TTE_OFF_SKB_HEAD);
    u16 nh = rd_u16(skb, TTE_OFF_SKB_NETWORK_HEADER);
    u16 th = rd_u16(skb, TTE_OFF_SKB_TRANSPORT_HEADER);
    if (!head || nh == 0xffff || th == 0xffff)
        return;
    u8 version = rd_u8(head, nh) >> 4;
    if (version == 4) {
        t->family = TTE_AF_INET;
        __builtin_memset(t->raddr, 0, 16);
        __builtin_memset(t->laddr, 0, 16);
        bpf_probe_read_kernel(t->raddr, 4, head + nh + 12); /* iphdr.saddr */
        bpf_probe_read_kernel(t->laddr, 4, head + nh + 16); /* iphdr.daddr: ours, not 0.0.0.0 */
    } else if (version == 6) {
        t->family = TTE_AF_INET6;
        bpf_probe_read_kernel(t->raddr, 16, head + nh + 8);  /* ipv6hdr.saddr */
        bpf_probe_read_kernel(t->laddr, 16, head + nh + 24); /* ipv6hdr.daddr */
    } else {
        return;
    }
    t->rport = bpf_ntohs(rd_u16(head, th)); /* tcphdr.source */
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
    s32 reason = -1;
    u32 flags = 0;

#ifdef TTE_RST_HAS_STATE
    state = args->state;
#else
    state = sk ? rd_u8(sk, TTE_OFF_SKC_STATE) : 0;
#endif
#ifdef TTE_RST_HAS_REASON
    reason = args->reason;
#endif
    if (skb == 0)
        flags |= TTE_F_ACTIVE;

#ifdef TTE_RST_SOCKADDR
    /* 6.10+: saddr/daddr hold a sockaddr_in/sockaddr_in6; saddr is the local end (for a
     * full socket from the socket, otherwise from the incoming segment, swapped). */
    {
        u8 sa[28] = {}, da[28] = {};
        __builtin_memcpy(sa, args->saddr, 28);
        __builtin_memcpy(da, args->daddr, 28);
        t.family = *(u16 *)&sa[0];
        t.lport = bpf_ntohs(*(u16 *)&sa[2]);
        t.rport = bpf_ntohs(*(u16 *)&da[2]);
        if (t.family == TTE_AF_INET6) {
            __builtin_memcpy(t.laddr, &sa[8], 16);
            __builtin_memcpy(t.raddr, &da[8], 16);
        } else {
            __builtin_memcpy(t.laddr, &sa[4], 4);
            __builtin_memcpy(t.raddr, &da[4], 4);
        }
    }
#else
    /* Before 6.10: ports and 4/16-byte addresses, full sockets only. */
#ifdef TTE_RST_HAS_FAMILY
    t.family = args->family;
#else
    t.family = sk ? rd_u16(sk, TTE_OFF_SKC_FAMILY) : TTE_AF_INET;
#endif
    t.lport = args->sport;
    t.rport = args->dport;
    ADDRS_FROM_ARGS(t.family, t.laddr, t.raddr);
#endif

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
        c = closed.lookup(&t);
    } else {
        s = socks.lookup(&key);
        ino = sk_inode(sk);
        if (!s)
            /* An orphan's own reset (data after close): tcp_done() has already destroyed the
             * socket and moved its history to the closed table by the time this fires. */
            c = closed.lookup(&t);
    }
    u32 pid = c ? c->sock.pid : owner_of(s, ino, &io);
    const char *comm = c ? c->sock.comm : (s ? s->comm : (io ? io->comm : 0));
    if (filtered_out(pid, comm, t.netns, t.lport, t.rport)) {
        stat_inc(TTE_STAT_FILTERED);
        return 0;
    }
    if (reason >= 0 && reason < 63)
        stat_inc(TTE_STAT_RST_SENT_BASE + reason);
    else
        stat_inc(TTE_STAT_RST_SENT_BASE + 63);
    if (!admit(TTE_REC_RESET_SENT, state, reason, 0, pid, comm, t.family, t.raddr,
               service_port(c ? &c->sock : s, t.lport, t.rport)))
        return 0;

    struct tte_record *r = reserve();
    if (!r)
        return 0;
    stamp_current(r, now);
    r->type = TTE_REC_RESET_SENT;
    r->skaddr = key;
    r->state = state;
    r->reason = reason;
    r->family = t.family;
    r->lport = t.lport;
    r->rport = t.rport;
    __builtin_memcpy(r->laddr, t.laddr, 16);
    __builtin_memcpy(r->raddr, t.raddr, 16);
    r->netns = t.netns;
    r->ino = ino;
    r->flags = flags;
    if (skb)
        r->seg_flags = segment_flags(skb);
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
    }
    submit(r);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    u64 key = (u64)args->skaddr;
    const void *sk = (const void *)args->skaddr;
    u64 now = bpf_ktime_get_ns();
    struct tte_sock *s = socks.lookup(&key);
    struct tte_owner *io = 0;
    u64 ino = sk_inode(sk);
    u32 pid = owner_of(s, ino, &io);
    u32 netns = s ? s->netns : sk_netns(sk);
    const char *comm = s ? s->comm : (io ? io->comm : 0);
    if (filtered_out(pid, comm, netns, args->sport, args->dport)) {
        stat_inc(TTE_STAT_FILTERED);
        return 0;
    }
    stat_inc(TTE_STAT_RST_RECEIVED);
    u8 rstate = rd_u8(sk, TTE_OFF_SKC_STATE);
    {
        u8 ra[16] = {};
        if (args->family == TTE_AF_INET6)
            __builtin_memcpy(ra, args->daddr_v6, 16);
        else
            __builtin_memcpy(ra, args->daddr, 4);
        if (!admit(TTE_REC_RESET_RECEIVED, rstate, -1, 0, pid, comm, args->family, ra,
                   service_port(s, args->sport, args->dport)))
            return 0;
    }

    struct tte_record *r = reserve();
    if (!r)
        return 0;
    stamp_current(r, now);
    r->type = TTE_REC_RESET_RECEIVED;
    r->skaddr = key;
    r->reason = -1;
    /* tcp_reset() fires this before tcp_done(): the state is the one the RST arrived in. */
    r->state = rstate;
    r->family = args->family;
    r->lport = args->sport;
    r->rport = args->dport;
    ADDRS_FROM_ARGS(args->family, r->laddr, r->raddr);
#ifdef TTE_RECV_HAS_COOKIE
    r->cookie = args->sock_cookie;
#endif
    r->netns = netns;
    r->ino = ino;
    r->flags = flags_from_sk(sk);
    fill_owner(r, s, io);
    if (full_tcp_state(r->state))
        read_tcp_fields(r, sk, now);
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
    struct tte_sock *s = socks.lookup(&key);
    struct tte_owner *io = 0;
    u64 ino = sk_inode(sk);
    u32 pid = owner_of(s, ino, &io);
    u32 netns = s ? s->netns : sk_netns(sk);
    u16 lport = rd_u16(sk, TTE_OFF_SKC_NUM);
    u16 rport = bpf_ntohs(rd_u16(sk, TTE_OFF_SKC_DPORT));
    const char *comm = s ? s->comm : (io ? io->comm : 0);
    if (filtered_out(pid, comm, netns, lport, rport)) {
        stat_inc(TTE_STAT_FILTERED);
        return 0;
    }
    if (err < 160)
        stat_inc(TTE_STAT_ABORT_BASE + err);
    if (!admit(TTE_REC_ABORT, rd_u8(sk, TTE_OFF_SKC_STATE), -1, err, pid, comm, family,
               s ? s->raddr : 0, service_port(s, lport, rport)))
        return 0;

    struct tte_record *r = reserve();
    if (!r)
        return 0;
    stamp_current(r, now);
    r->type = TTE_REC_ABORT;
    r->skaddr = key;
    r->reason = -1;
    r->err = err;
    r->state = rd_u8(sk, TTE_OFF_SKC_STATE);
    tuple_from_sk(r, sk);
    r->netns = netns;
    r->ino = ino;
    r->flags = flags_from_sk(sk);
    fill_owner(r, s, io);
    read_tcp_fields(r, sk, now);
    submit(r);
    return 0;
}

/* ---------------------------------------------------------------- fallback I/O hooks */
#if TTE_IO_HOOKS
/* Only for kernels without BTF, where the socket's own timestamps cannot be read: every
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
        if (filtered_out(fresh.pid, fresh.comm, 0, 0, 0))
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
