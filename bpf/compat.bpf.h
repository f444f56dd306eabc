/* tcptrace-explain: every kernel-compatibility shim of the BPF program, in one place.
 *
 * Each entry names the kernel change that made it necessary. The loader detects which side of
 * each change the running kernel is on from the tracepoint format files (tracer/kernel/
 * features.py), never from a version number, and says so with a TTE_RST_* / TTE_RECV_* -D.
 * tests/load compiles and verifies every tcp_send_reset layout listed here against format files
 * of older kernels (tests/data/formats).
 *
 * Kernel facts the rest of the program relies on, with the version they date from:
 *   - tracepoints sock:inet_sock_set_state (4.16), tcp:tcp_send_reset, tcp_receive_reset,
 *     tcp_destroy_sock, tcp_retransmit_skb (4.15), sock:inet_sk_error_report (5.14, "net: sock:
 *     add trace for socket errors"); BPF ring buffer (5.8); bpf_probe_read_kernel (5.5).
 *   - inet_sk_error_report's format has no socket pointer: the program attaches to the raw
 *     tracepoint, whose argument 0 is the struct sock * (tte.bpf.c).
 *   - tcp_set_state(TCP_CLOSE) unhashes the socket (inet_put_port() clears inet_num) before
 *     sk_error_report() runs, so the tuple an abort reports is kept in the socket table.
 */
#ifndef TTE_COMPAT_BPF_H
#define TTE_COMPAT_BPF_H

/* ---- 6.10, b533fb9cf4f7 "rstreason: make it work in trace world" ----------------------
 * tcp_send_reset gained `enum sk_rst_reason reason`. BCC pastes the field's declaration from
 * the format file, and headers older than the running kernel do not know the enum: rename it
 * to one declared here (4 bytes, like the kernel's). The values' names come from the format's
 * print fmt at run time (tracer/kernel/features.py), never from this file. */
#define sk_rst_reason tte_sk_rst_reason
enum tte_sk_rst_reason { TTE_RST_REASON_PLACEHOLDER = 0 };

#ifdef TTE_RST_HAS_REASON
#define RST_REASON_FROM_ARGS() ((s32)args->reason)
#else
#define RST_REASON_FROM_ARGS() ((s32)-1) /* before 6.10, or --ignore-kernel-reason */
#endif

/* ---- 5.1 to 5.3, af4325ecc24f "tcp: expose sk_state in tcp_retransmit_skb tracepoint" ---
 * The tcp_event_sk_skb class (tcp_send_reset before 6.10) gained `int state`; 4.19-based trees
 * lack it, so read the socket's own state there (sk is always a full socket before 6.10). */
#ifdef TTE_RST_HAS_STATE
#define RST_STATE_FROM_ARGS(sk) ((int)args->state)
#else
#define RST_STATE_FROM_ARGS(sk) ((sk) ? (int)rd_u8(sk, TTE_OFF_SKC_STATE) : 0)
#endif

/* ---- tcp_send_reset's addresses: two layouts --------------------------------------------
 * 6.10, 19822a980e19 "trace: tcp: fully support trace_tcp_send_reset": the tracepoint fires for
 * every RST (no socket, timewait, listener) and sport/dport/family/saddr_v6/daddr_v6 were
 * replaced by saddr[28]/daddr[28], each a sockaddr_in or sockaddr_in6. saddr is the local end:
 * from the socket for a full socket, otherwise from the incoming segment, swapped.
 * Before 6.10: ports and 4/16-byte addresses of full sockets only; `family` arrived in 5.12
 * (3dd344ea84e1 "net: tracepoint: exposing sk_family in all tcp:tracepoints"), before which the
 * socket's own skc_family is read. */
#ifdef TTE_RST_SOCKADDR
#define RST_TUPLE_FROM_ARGS(t, sk)                                                 \
    do {                                                                           \
        u8 sa[28] = {}, da[28] = {};                                               \
        __builtin_memcpy(sa, args->saddr, 28);                                     \
        __builtin_memcpy(da, args->daddr, 28);                                     \
        (t)->family = *(u16 *)&sa[0];                                              \
        (t)->lport = bpf_ntohs(*(u16 *)&sa[2]);                                    \
        (t)->rport = bpf_ntohs(*(u16 *)&da[2]);                                    \
        if ((t)->family == TTE_AF_INET6) {                                         \
            __builtin_memcpy((t)->laddr, &sa[8], 16);                              \
            __builtin_memcpy((t)->raddr, &da[8], 16);                              \
        } else {                                                                   \
            __builtin_memcpy((t)->laddr, &sa[4], 4);                               \
            __builtin_memcpy((t)->raddr, &da[4], 4);                               \
        }                                                                          \
    } while (0)
#else
#ifdef TTE_RST_HAS_FAMILY
#define RST_FAMILY_FROM_ARGS(sk) (args->family)
#else
#define RST_FAMILY_FROM_ARGS(sk) ((sk) ? rd_u16(sk, TTE_OFF_SKC_FAMILY) : TTE_AF_INET)
#endif
#define RST_TUPLE_FROM_ARGS(t, sk)                                                 \
    do {                                                                           \
        (t)->family = RST_FAMILY_FROM_ARGS(sk);                                    \
        (t)->lport = args->sport;                                                  \
        (t)->rport = args->dport;                                                  \
        ADDRS_FROM_ARGS((t)->family, (t)->laddr, (t)->raddr);                      \
    } while (0)
#endif

/* ---- tcp_receive_reset's sock_cookie ----------------------------------------------------
 * Absent in 4.15, present in 4.19-era trees and in 6.1's include/trace/events/tcp.h (the commit
 * that added it is not pinned). Records carry 0 without it. */
#ifdef TTE_RECV_HAS_COOKIE
#define RECV_COOKIE_FROM_ARGS() (args->sock_cookie)
#else
#define RECV_COOKIE_FROM_ARGS() 0
#endif

/* ---- 6.3, 6e6eda44b939 "sock: add tracepoint for send recv length" -----------------------
 * sock:sock_send_length / sock_recv_length, the per-I/O fallback for kernels without BTF
 * (TTE_IO_HOOKS); program.py refuses --io-hooks on kernels that lack them. */

#endif /* TTE_COMPAT_BPF_H */
