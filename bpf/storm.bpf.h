/* tcptrace-explain: storm accounting. Beyond a per-CPU rate, events are counted per summary
 * key in the storm map instead of sent one by one, so a reset storm costs a hash update per
 * event, not a trip through user space, and is still shown (summarized) and counted exactly.
 * User space drains the buckets once a second (tracer/explain/storm.py).
 */
#ifndef TTE_STORM_BPF_H
#define TTE_STORM_BPF_H

/* A storm key's port with this bit set: the reset, sent with no socket, answered a SYN. */
#define TTE_STORM_SYN (1u << 16)

/* How long a reset and the error report of the same socket count as one call chain: tcp_reset()
 * and the timers' abort paths run both in microseconds on one CPU. */
#define TTE_PAIR_NS 1000000ULL

static __always_inline int pairs(u8 a, u8 b)
{
    return (a == TTE_REC_ABORT && (b == TTE_REC_RESET_SENT || b == TTE_REC_RESET_RECEIVED)) ||
           (b == TTE_REC_ABORT && (a == TTE_REC_RESET_SENT || a == TTE_REC_RESET_RECEIVED));
}

/* Whether this event may go out as a full record; if not, it has been counted in the storm map
 * under its summary key (or, with that map full, as TTE_STAT_STORM_FULL). A reset and the error
 * report of the same socket take one decision (struct tte_rate's pair_*): user space joins the
 * two records, or the two buckets (tracer/explain/storm.py join()), into one incident, which a
 * sent reset and a counted error report would make two. */
static __always_inline int admit(u8 type, u64 skaddr, u8 state, s32 reason, s32 err, u32 pid, const char *comm,
                                 u16 family, const u8 *raddr, u32 port)
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
    int paired = skaddr && rt->pair_sk == skaddr && now - rt->pair_ns < TTE_PAIR_NS && pairs(type, rt->pair_type);
    if (paired) {
        rt->pair_sk = 0;
        if (rt->pair_admitted) {
            rt->count++;
            return 1;
        }
    } else {
        u64 limit = rt->prev_seen > TTE_STORM_LIMIT / TTE_STORM_WINDOWS_PER_S
                        ? (TTE_STORM_SAMPLE + TTE_STORM_WINDOWS_PER_S - 1) / TTE_STORM_WINDOWS_PER_S
                        : TTE_STORM_LIMIT / TTE_STORM_WINDOWS_PER_S;
        int ok = rt->count < limit;
        if (skaddr && (type == TTE_REC_ABORT || type == TTE_REC_RESET_SENT || type == TTE_REC_RESET_RECEIVED)) {
            rt->pair_sk = skaddr;
            rt->pair_ns = now;
            rt->pair_type = type;
            rt->pair_admitted = ok;
        }
        if (ok) {
            rt->count++;
            return 1;
        }
    }
    struct tte_storm_key k = {};
    k.type = type;
    k.state = state;
    k.family = family;
    k.reason = reason;
    k.err = err;
    k.pid = pid;
    k.port = port & 0xffff;
    k.syn = !!(port & TTE_STORM_SYN);
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

/* The service side's port of a connection, the storm key's port: local if this side accepted,
 * remote if it connected, else the lower of the two. */
static __always_inline u16 service_port(const struct tte_sock *s, u16 lport, u16 rport)
{
    if (s && (s->opened << 8) == TTE_F_ACCEPTED)
        return lport;
    if (s && (s->opened << 8) == TTE_F_CONNECTED)
        return rport;
    return lport < rport ? lport : rport;
}

#endif /* TTE_STORM_BPF_H */
