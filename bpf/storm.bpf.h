/* tcptrace-explain: storm accounting. Beyond a per-CPU rate, events are counted per summary
 * key in the storm map instead of sent one by one, so a reset storm costs a hash update per
 * event, not a trip through user space, and is still shown (summarized) and counted exactly.
 * User space drains the buckets once a second (tracer/explain/storm.py).
 */
#ifndef TTE_STORM_BPF_H
#define TTE_STORM_BPF_H

/* A storm key's port with this bit set: the reset, sent with no socket, answered a SYN. */
#define TTE_STORM_SYN (1u << 16)

/* How long a reset and the error report of a socket without a table entry count as one call
 * chain (the per-CPU slot): tcp_reset() and the timers' abort paths run both in microseconds. */
#define TTE_PAIR_NS 1000000ULL

/* Whether SECOND, on the same socket, is the partner of FIRST: the error report a received or
 * sent reset causes (tcp_reset(); tcp_disconnect() and the keepalive and user timeouts send
 * the reset first), or the reset an abort sends after reporting (tcp_abort()). */
static __always_inline int pairs(u8 first, u8 second)
{
    if (second == TTE_REC_ABORT)
        return first == TTE_REC_RESET_RECEIVED || first == TTE_REC_RESET_SENT;
    return first == TTE_REC_ABORT && second == TTE_REC_RESET_SENT;
}

static __always_inline int pairable(u8 type)
{
    return type == TTE_REC_ABORT || type == TTE_REC_RESET_SENT || type == TTE_REC_RESET_RECEIVED;
}

/* Whether this event may go out as a full record; if not, it has been counted in the storm map
 * under its summary key (or, with that map full, as TTE_STAT_STORM_FULL). A reset and the error
 * report of the same socket take one decision: user space joins the two records, or the two
 * buckets (tracer/explain/storm.py join()), into one incident, which a sent reset and a counted
 * error report would make two. The decision is kept in the socket's table entry S: the two
 * can be apart by a preemption, or by softirqs that run other sockets' resets in between
 * (tcp_disconnect() sends its reset in process context). Without an entry, in a per-CPU slot. */
static __always_inline int admit(u8 type, u64 skaddr, struct tte_sock *s, u8 state, s32 reason, s32 err, u32 pid,
                                 const char *comm, u16 family, const u8 *raddr, u32 port)
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
    int paired = 0, ok = 0;
    if (s && pairs(s->pair_type, type)) {
        paired = 1;
        ok = s->pair_admitted;
        s->pair_type = 0;
    } else if (!s && skaddr && rt->pair_sk == skaddr && now - rt->pair_ns < TTE_PAIR_NS && pairs(rt->pair_type, type)) {
        paired = 1;
        ok = rt->pair_admitted;
        rt->pair_sk = 0;
    }
    if (!paired) {
        u64 limit = rt->prev_seen > TTE_STORM_LIMIT / TTE_STORM_WINDOWS_PER_S
                        ? (TTE_STORM_SAMPLE + TTE_STORM_WINDOWS_PER_S - 1) / TTE_STORM_WINDOWS_PER_S
                        : TTE_STORM_LIMIT / TTE_STORM_WINDOWS_PER_S;
        ok = rt->count < limit;
        if (pairable(type) && s) {
            s->pair_type = type;
            s->pair_admitted = ok;
        } else if (pairable(type) && skaddr) {
            rt->pair_sk = skaddr;
            rt->pair_ns = now;
            rt->pair_type = type;
            rt->pair_admitted = ok;
        }
    }
    if (ok) {
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
