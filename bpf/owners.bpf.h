/* tcptrace-explain: the holders of accepted sockets (tracer/explain/owners.py).
 *
 * An accepted socket's owner is its listener's until its holder is seen: a pre-forked server's
 * worker holds what it accepted (or, like PostgreSQL, a child forked after accept does). The
 * holder's close() runs in the holder's own context: the ->FIN_WAIT1/LAST_ACK change, or, for a
 * socket already in CLOSE after a reset or an abortive close, __tcp_close() ->
 * inet_csk_destroy_sock() -> tcp:tcp_destroy_sock. At that moment the current task is the
 * holder. Only sockets that produced a record pay for it: one store when the record is sent,
 * one TTE_REC_OWNER at the close; no per-syscall or per-I/O hook.
 */
#ifndef TTE_OWNERS_BPF_H
#define TTE_OWNERS_BPF_H

/* PF_KTHREAD from include/linux/sched.h: task flags are macros, absent from BTF; the value has
 * not changed since it was introduced. */
#define TTE_PF_KTHREAD 0x00200000

static __always_inline void mark_notable(struct tte_sock *s)
{
    if (owner_provisional(s))
        s->notable = 1;
}

/* Name the holder of socket S (table entry of KEY): the current task, which is closing it. */
static __always_inline void emit_owner(const struct tte_sock *s, u64 key, u64 now)
{
    if (!s->notable || !owner_provisional(s))
        return;
    const void *task = (const void *)bpf_get_current_task();
    /* A last fput() deferred to a kworker (delayed_fput) is not the holder: say nothing; user
     * space looks in /proc or names the candidates. */
    if (rd_u32(task, TTE_OFF_TASK_FLAGS) & TTE_PF_KTHREAD)
        return;
    struct tte_record *r = reserve();
    if (!r)
        return;
    stamp_current(r, now);
    r->type = TTE_REC_OWNER;
    r->skaddr = key;
    r->netns = s->netns;
    r->birth_ns = s->birth_ns;
    r->reason = -1;
    r->family = s->family;
    r->lport = s->lport;
    r->rport = s->rport;
    __builtin_memcpy(r->laddr, s->laddr, 16);
    __builtin_memcpy(r->raddr, s->raddr, 16);
    r->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(r->thread, sizeof(r->thread));
    const void *leader = (const void *)rd_u64(task, TTE_OFF_TASK_GROUP_LEADER);
    if (leader)
        bpf_probe_read_kernel(r->comm, sizeof(r->comm), (const char *)leader + TTE_OFF_TASK_COMM);
    const void *parent = (const void *)rd_u64(task, TTE_OFF_TASK_REAL_PARENT);
    r->cur_pid = parent ? rd_u32(parent, TTE_OFF_TASK_TGID) : 0; /* for --children (bpf/tte.h) */
    r->owner_src = TTE_OWNER_CLOSE;
    submit(r);
}

#endif /* TTE_OWNERS_BPF_H */
