/* tcptrace-explain: a socket's context in records: its owner, its table entry, its history.
 *
 * Owners are captured only in process context of the owner's own syscall (connect, listen,
 * close, I/O); softirq events read them from the table, never from the current task, which on
 * loopback and in softirq is whoever happened to run the network stack.
 */
#ifndef TTE_CONTEXT_BPF_H
#define TTE_CONTEXT_BPF_H

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

/* pid_deferred: the owner is only the listener's, and the listener is shared with a traced
 * process; the holder, known at its close, decides in user space (tracer/explain/owners.py). */
static __always_inline int filtered_out(u32 pid, const char *comm, u32 netns, u16 lport, u16 rport,
                                        int pid_deferred)
{
#if TTE_FILTER_PID
    if (!pid_deferred && (!pid || !filter_pids.lookup(&pid)))
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

/* A record's context from the closed-connection history (a timewait's or an orphan's reset). */
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


/* An accepted socket whose owner is still its listener's: its holder is not known yet. */
static __always_inline int owner_provisional(const struct tte_sock *s)
{
    return s && s->owner_src == TTE_OWNER_LISTENER;
}

/* Drop an event of a socket the filters exclude, counting it. */
static __always_inline int not_ours(u32 pid, const char *comm, u32 netns, u16 lport, u16 rport,
                                    const struct tte_sock *s)
{
    if (!filtered_out(pid, comm, netns, lport, rport, owner_provisional(s)))
        return 0;
    stat_inc(TTE_STAT_FILTERED);
    return 1;
}

/* The owner of a full socket as the reset and abort probes need it: the table's entry for the
 * socket, else the owner user space preloaded for its inode, else none. */
struct tte_who {
    struct tte_sock *s;
    struct tte_owner *io;
    u64 ino;
    u32 pid;
    u32 netns;
    const char *comm;
};

static __always_inline void who_owns(struct tte_who *w, u64 key, const void *sk)
{
    w->s = socks.lookup(&key);
    w->io = 0;
    w->ino = sk_inode(sk);
    w->pid = owner_of(w->s, w->ino, &w->io);
    w->netns = w->s ? w->s->netns : sk_netns(sk);
    w->comm = w->s ? w->s->comm : (w->io ? w->io->comm : 0);
}

#endif /* TTE_CONTEXT_BPF_H */
