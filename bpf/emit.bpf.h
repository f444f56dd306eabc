/* tcptrace-explain: record emission. Every record goes through emit_begin() (admission by the
 * storm accounting, ring-buffer reservation, the common header) and submit(); a record that
 * could not be reserved is counted as lost, never dropped silently.
 */
#ifndef TTE_EMIT_BPF_H
#define TTE_EMIT_BPF_H

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

/* Start a record of TYPE for the socket at SKADDR: 0 when it is not to be sent (summarized in a
 * storm bucket, or lost: both counted). The storm key takes the owner, the remote address and
 * the service port (with TTE_STORM_SYN: a socketless reset answered a SYN); the caller fills in
 * the rest and calls submit(). */
static __always_inline struct tte_record *emit_begin(u8 type, u64 skaddr, struct tte_sock *s, u8 state, s32 reason,
                                                     s32 err, u64 now,
                                                     u32 pid, const char *comm, u16 family, const u8 *raddr,
                                                     u32 port)
{
    if (!admit(type, skaddr, s, state, reason, err, pid, comm, family, raddr, port))
        return 0;
    struct tte_record *r = reserve();
    if (!r)
        return 0;
    stamp_current(r, now);
    r->type = type;
    r->skaddr = skaddr;
    r->state = state;
    r->reason = reason;
    r->err = err;
    return r;
}

#endif /* TTE_EMIT_BPF_H */
