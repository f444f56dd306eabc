/* tcptrace-explain: the BPF program's maps and the structs they hold.
 *
 * Above every map: where its entries are inserted, updated, deleted and read, and why it
 * stays bounded. Helpers that touch exactly one map live right below it.
 */
#ifndef TTE_MAPS_BPF_H
#define TTE_MAPS_BPF_H

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
    u8 notable; /* a record was sent while the owner was only the listener's: name the holder
                 * (TTE_REC_OWNER) when it closes the socket (bpf/owners.bpf.h) */
    /* The 4-tuple, from state-change arguments: tcp_done() unhashes the socket (clearing its
     * local port) before the error report runs, so the socket itself no longer has it. */
    u16 family;
    u16 lport;
    u16 rport;
    u8 laddr[16];
    u8 raddr[16];
    char comm[TTE_COMM_LEN];
    char thread[TTE_COMM_LEN];
    /* The storm decision of this socket's last reset or error report, for its partner
     * (bpf/storm.bpf.h admit()): pair_type 0 is none. In what was the struct's tail padding. */
    u8 pair_type;
    u8 pair_admitted;
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
 * socket that answers late data with an RST), or gave up on a connect, by netns + 4-tuple.
 * A 4-way set-associative array, not an LRU hash: the tuple's hash picks a set of
 * TTE_CLOSED_WAYS slots, an insert takes the set's empty slot, the tuple's own, or its oldest.
 *   insert: tcp:tcp_destroy_sock (closed_slot()).  read: tcp_send_reset from a timewait socket,
 *   an orphan, or with no socket (closed_find()).  delete: never; a slot is overwritten.
 * Why: this table is full under any churn, and an LRU hash insert into a full table (allocation,
 * eviction, the LRU lists' locks) cost about 1 us per connection here; an array slot costs a few
 * lookups the verifier inlines and plain stores. The trade-off: a set forgets its oldest of 4,
 * not the table's oldest, so an unlucky tuple can be evicted before a true LRU would drop it
 * (the table keeps the newest TTE_MAX_CLOSED/60 closes per second of a 60 s timewait only on
 * average); and two CPUs writing the same slot in the same instant can mix two histories (no
 * lock: tracing programs cannot take bpf_spin_lock). destroy_ns is cleared first and written
 * last, so a reader never takes a slot while it is rewritten in the common, single-writer case.
 * Bounded: TTE_MAX_CLOSED slots and their sets' headers, allocated once. */
#define TTE_CLOSED_WAYS 4
/* A compiler barrier: keeps the stores around it in program order (x86 keeps them so too). */
#define tte_barrier() __asm__ __volatile__("" ::: "memory")
#define TTE_CLOSED_SETS (TTE_MAX_CLOSED / TTE_CLOSED_WAYS)
struct tte_closed_slot {
    struct tte_tuple t;
    u32 _pad;
    struct tte_closed c; /* c.destroy_ns == 0: empty, or being written */
};
BPF_ARRAY(closed, struct tte_closed_slot, TTE_MAX_CLOSED);
/* closed_sets: one cache line per set naming what its slots hold (the tuple's hash and
 * destroy_ns per way), so finding a tuple or a victim touches one line, not four slots of five
 * lines each: with the table far larger than the caches, those misses were most of the cost of
 * keeping the history. Written with the slot (closed_slot(), closed_commit()). */
struct tte_closed_set {
    u64 destroy_ns[TTE_CLOSED_WAYS]; /* 0: empty, or being written */
    u32 tag[TTE_CLOSED_WAYS];        /* tuple_hash() of the slot's tuple */
    u64 _pad[2];
};
BPF_ARRAY(closed_sets, struct tte_closed_set, TTE_CLOSED_SETS);

static __always_inline u32 tuple_hash(const struct tte_tuple *t)
{
    const u32 *w = (const u32 *)t;
    u32 h = 2166136261U; /* FNV-1a over 32-bit words */
#pragma unroll
    for (int i = 0; i < (int)(sizeof(*t) / 4); i++) {
        h ^= w[i];
        h *= 16777619U;
    }
    return h ^ (h >> 15);
}

static __always_inline int tuple_eq(const struct tte_tuple *a, const struct tte_tuple *b)
{
    const u32 *x = (const u32 *)a, *y = (const u32 *)b;
    u32 d = 0;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(*a) / 4); i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

/* The history kept for tuple T, or 0. */
static __always_inline struct tte_closed *closed_find(const struct tte_tuple *t)
{
    u32 h = tuple_hash(t);
    u32 set = h % TTE_CLOSED_SETS;
    struct tte_closed_set *cs = closed_sets.lookup(&set);
    if (!cs)
        return 0;
#pragma unroll
    for (int w = 0; w < TTE_CLOSED_WAYS; w++) {
        if (!cs->destroy_ns[w] || cs->tag[w] != h)
            continue;
        u32 i = set * TTE_CLOSED_WAYS + w;
        struct tte_closed_slot *sl = closed.lookup(&i);
        if (sl && sl->c.destroy_ns && tuple_eq(&sl->t, t))
            return &sl->c;
    }
    return 0;
}

/* Where tuple T's history is written: the way of its set that is empty, holds T already, or is
 * the oldest. The set names the way as empty until closed_commit(). */
struct tte_closed_ref {
    struct tte_closed_set *set;
    struct tte_closed *c;
    u32 way;
    u32 tag;
};

static __always_inline int closed_slot(const struct tte_tuple *t, struct tte_closed_ref *ref)
{
    u32 h = tuple_hash(t);
    u32 set = h % TTE_CLOSED_SETS;
    struct tte_closed_set *cs = closed_sets.lookup(&set);
    if (!cs)
        return 0;
    u32 way = 0;
    u64 oldest = ~0ULL;
#pragma unroll
    for (int w = 0; w < TTE_CLOSED_WAYS; w++) {
        u64 d = cs->destroy_ns[w];
        if (d == 0 || cs->tag[w] == h) {
            /* empty, or probably T's own (the slot's tuple is overwritten either way) */
            way = w;
            break;
        }
        if (d < oldest) {
            oldest = d;
            way = w;
        }
    }
    u32 i = set * TTE_CLOSED_WAYS + (way & (TTE_CLOSED_WAYS - 1));
    struct tte_closed_slot *sl = closed.lookup(&i);
    if (!sl)
        return 0;
    cs->destroy_ns[way & (TTE_CLOSED_WAYS - 1)] = 0;
    sl->c.destroy_ns = 0;
    tte_barrier();
    __builtin_memcpy(&sl->t, t, sizeof(*t));
    ref->set = cs;
    ref->c = &sl->c;
    ref->way = way & (TTE_CLOSED_WAYS - 1);
    ref->tag = h;
    return 1;
}

/* The slot's history is complete: name it in its set. */
static __always_inline void closed_commit(struct tte_closed_ref *ref, u64 destroy_ns)
{
    tte_barrier();
    ref->c->destroy_ns = destroy_ns;
    u32 w = ref->way & (TTE_CLOSED_WAYS - 1);
    ref->set->tag[w] = ref->tag;
    tte_barrier();
    ref->set->destroy_ns[w] = destroy_ns;
}

/* listeners: (netns << 16 | port) -> the owner of the listening socket, so an accepted child
 * (cloned in softirq, in whatever task ran it) inherits its server's owner. That owner is only
 * provisional (TTE_OWNER_LISTENER): a pre-forked server's workers hold what they accept, and the
 * holder is named at its close (bpf/owners.bpf.h).
 * insert: ->LISTEN, and user space at start-up for listeners that predate the tracer;
 * delete: LISTEN->CLOSE by the same owner (another process may listen on the port with
 * SO_REUSEPORT, e.g. across a reload); LRU bounded. */
struct tte_listener {
    u32 pid;
    u32 flags; /* TTE_LISTENER_* */
    char comm[TTE_COMM_LEN];
    char thread[TTE_COMM_LEN];
};
BPF_TABLE("lru_hash", u64, struct tte_listener, listeners, TTE_MAX_LISTENERS);

/* active_closes: connections closed first by this host (ESTABLISHED -> FIN_WAIT1), per owner
 * and remote endpoint. The closer holds the TIME_WAIT socket for 60 s, so the rate of these is
 * the TIME_WAIT population. insert/update: the close path of inet_sock_set_state; read: user
 * space at scrape or poll time; never deleted: LRU of TTE_MAX_CLOSERS keeps the active ones. */
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
    /* For a socket without a table entry: the last reset or error report on this CPU, whose
     * partner follows it in the same call chain (bpf/storm.bpf.h admit()). */
    u64 pair_sk;
    u64 pair_ns;
    u8 pair_type;
    u8 pair_admitted;
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

#endif /* TTE_MAPS_BPF_H */
