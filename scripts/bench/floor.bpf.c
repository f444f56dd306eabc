/* The floor of the benchmark (scripts/bench/run.py): the cheapest program that can sit on the
 * tracepoints tcptrace-explain uses. Each one only bumps a per-CPU counter, so its bpf_stats
 * run time is the cost of being attached at all (the tracepoint call, the context, one
 * per-CPU array lookup); a tracer cannot cost less per connection than this.
 */
#include <uapi/linux/ptrace.h>

/* tcp_send_reset's `enum sk_rst_reason` (6.10) is unknown to older headers: the same rename
 * as bpf/compat.bpf.h. */
#define sk_rst_reason floor_sk_rst_reason
enum floor_sk_rst_reason { FLOOR_RST_REASON_PLACEHOLDER = 0 };

BPF_PERCPU_ARRAY(hits, u64, 8);

static __always_inline void hit(u32 i)
{
    u64 *v = hits.lookup(&i);
    if (v)
        (*v)++;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    hit(0);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
    hit(1);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    hit(2);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    hit(3);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    hit(4);
    return 0;
}

RAW_TRACEPOINT_PROBE(inet_sk_error_report)
{
    hit(5);
    return 0;
}
