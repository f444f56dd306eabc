/* tcptrace-explain: reading the kernel's own structs, never through compiler-known layouts.
 *
 * The installed headers may belong to another kernel, so every field is read with
 * bpf_probe_read_kernel at an offset the loader took from the running kernel's BTF
 * (TTE_OFF_*, bpf/config.bpf.h). Nothing here touches a map.
 */
#ifndef TTE_KREAD_BPF_H
#define TTE_KREAD_BPF_H

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

/* Where a full socket stands in sequence space. snd_una - bytes_acked and rcv_nxt -
 * bytes_received stay constant for the connection's life (tcp_snd_una_update() and
 * tcp_rcv_nxt_update() move each pair together) and NAT does not rewrite them: they identify the
 * connection on both hosts (tracer/explain/pairing.py). */
static __always_inline void read_seq_fields(struct tte_record *r, const void *sk)
{
    r->snd_una = rd_u32(sk, TTE_OFF_TP_SND_UNA);
    r->snd_nxt = rd_u32(sk, TTE_OFF_TP_SND_NXT);
    r->rcv_nxt = rd_u32(sk, TTE_OFF_TP_RCV_NXT);
    r->bytes_acked = rd_u64(sk, TTE_OFF_TP_BYTES_ACKED);
    r->bytes_received = rd_u64(sk, TTE_OFF_TP_BYTES_RECEIVED);
    r->flags |= TTE_F_SEQ;
    /* ts_recent_stamp is set (ktime_get_seconds()) whenever a TSval is stored (tcp_store_ts_recent,
     * tcp_create_openreq_child), so 0 means the option is off. ts_recent is the peer's clock
     * with its per-connection offset; rcv_tsecr is kept with this side's offset removed
     * (tcp_fast_parse_options()): this host's TCP clock, in ms, when it sent what the peer last
     * echoed. */
    if (rd_u32(sk, TTE_OFF_TP_TS_RECENT_STAMP)) {
        r->ts_recent = rd_u32(sk, TTE_OFF_TP_TS_RECENT);
        r->ts_echo = rd_u32(sk, TTE_OFF_TP_RCV_TSECR);
        r->flags |= TTE_F_TS;
    }
}

/* Whether a state change finds the sequence numbers set: not while entering SYN_SENT or
 * SYN_RECV (tcp_v4_connect() and inet_csk_clone_lock() change the state before they are set),
 * and never on a listener (LISTEN has no connection). */
static __always_inline int seq_set_at(int old_state, int new_state)
{
    return full_tcp_state(new_state) && new_state != TTE_TCP_SYN_SENT && new_state != TTE_TCP_SYN_RECV &&
           old_state != TTE_TCP_LISTEN;
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
    read_seq_fields(r, sk);
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

/* TCP flags byte of the segment (tcphdr byte 13), 0 if the headers are not set. */
static __always_inline u8 segment_flags(const void *skb)
{
    const u8 *head = (const u8 *)rd_u64(skb, TTE_OFF_SKB_HEAD);
    u16 th = rd_u16(skb, TTE_OFF_SKB_TRANSPORT_HEADER);
    if (!head || th == 0xffff)
        return 0;
    return rd_u8(head, th + 13);
}

/* The segment's own sequence numbers (tcphdr.seq, ack_seq) and, when it carries the timestamp
 * option in the layout RFC 7323 appendix A recommends and Linux sends (NOP, NOP, kind 8, length
 * 10 right after the fixed header), its TSval and TSecr. The peer sent the segment: its numbers
 * place the reset in the peer's connection when this side had no full socket (timewait, none). */
static __always_inline void segment_seq(struct tte_record *r, const void *skb)
{
    const u8 *head = (const u8 *)rd_u64(skb, TTE_OFF_SKB_HEAD);
    u16 th = rd_u16(skb, TTE_OFF_SKB_TRANSPORT_HEADER);
    if (!head || th == 0xffff)
        return;
    r->seg_seq = bpf_ntohl(rd_u32(head, th + 4));
    r->seg_ack = bpf_ntohl(rd_u32(head, th + 8));
    r->flags |= TTE_F_SEG_SEQ;
    if ((rd_u8(head, th + 12) >> 4) >= 8 && rd_u32(head, th + 20) == bpf_htonl(0x0101080a)) {
        r->seg_tsval = bpf_ntohl(rd_u32(head, th + 24));
        r->seg_tsecr = bpf_ntohl(rd_u32(head, th + 28));
        r->flags |= TTE_F_SEG_TS;
    }
}

/* The remote end of the segment a listener answered: the tracepoint takes addresses from the
 * listening socket, whose remote end is 0.0.0.0:0, so read the incoming IP and TCP headers. */
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

#endif /* TTE_KREAD_BPF_H */
