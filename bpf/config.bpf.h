/* tcptrace-explain: compile-time configuration of the BPF program.
 *
 * Everything here arrives from tracer/kernel/program.py as -D constants. Tunables and kernel
 * enum values have #ifndef defaults so the file reads on its own; kernel field offsets have
 * none: an offset the loader forgot would otherwise read byte 0 of the struct and give
 * plausible-looking garbage, so a missing one stops the compile.
 */
#ifndef TTE_CONFIG_BPF_H
#define TTE_CONFIG_BPF_H

/* ---- tunables (tracer/model/options.py) -------------------------------------------- */
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
#ifndef TTE_MAX_CLOSERS
#define TTE_MAX_CLOSERS 4096
#endif
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
#ifndef TTE_IO_HOOKS
#define TTE_IO_HOOKS 0
#endif

/* ---- kernel enums, read from the running kernel by the loader ------------------------- */
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

/* TCP header flag bits (byte 13 of struct tcphdr; RFC 9293), as segment_flags() reads them. */
#define TTE_TCPF_SYN 0x02
#define TTE_TCPF_ACK 0x10

/* Bits of enum sock_flags (from BTF). */
#ifndef TTE_SOCK_DEAD
#define TTE_SOCK_DEAD 0
#define TTE_SOCK_DONE 1
#define TTE_SOCK_KEEPOPEN 3
#define TTE_SOCK_LINGER 4
#endif

/* ---- kernel field offsets, from the running kernel's BTF (no defaults) ---------------- */
#ifndef TTE_OFF_SKC_FAMILY
#error "TTE_OFF_SKC_FAMILY is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_STATE
#error "TTE_OFF_SKC_STATE is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_NUM
#error "TTE_OFF_SKC_NUM is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_DPORT
#error "TTE_OFF_SKC_DPORT is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_DADDR
#error "TTE_OFF_SKC_DADDR is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_RCV_SADDR
#error "TTE_OFF_SKC_RCV_SADDR is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_V6_DADDR
#error "TTE_OFF_SKC_V6_DADDR is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_V6_RCV_SADDR
#error "TTE_OFF_SKC_V6_RCV_SADDR is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKC_NET
#error "TTE_OFF_SKC_NET is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_NET_INUM
#error "TTE_OFF_NET_INUM is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SK_FLAGS
#error "TTE_OFF_SK_FLAGS is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SK_ERR
#error "TTE_OFF_SK_ERR is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SK_PROTOCOL
#error "TTE_OFF_SK_PROTOCOL is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SK_TYPE
#error "TTE_OFF_SK_TYPE is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SK_SOCKET
#error "TTE_OFF_SK_SOCKET is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SOCKALLOC_INO
#error "TTE_OFF_SOCKALLOC_INO is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_LSNDTIME
#error "TTE_OFF_TP_LSNDTIME is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_RCV_TSTAMP
#error "TTE_OFF_TP_RCV_TSTAMP is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_LRCVTIME
#error "TTE_OFF_TP_LRCVTIME is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_SRTT_US
#error "TTE_OFF_TP_SRTT_US is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_TOTAL_RETRANS
#error "TTE_OFF_TP_TOTAL_RETRANS is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_RCV_NXT
#error "TTE_OFF_TP_RCV_NXT is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_COPIED_SEQ
#error "TTE_OFF_TP_COPIED_SEQ is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_WRITE_SEQ
#error "TTE_OFF_TP_WRITE_SEQ is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_SND_UNA
#error "TTE_OFF_TP_SND_UNA is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_SND_NXT
#error "TTE_OFF_TP_SND_NXT is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_BYTES_ACKED
#error "TTE_OFF_TP_BYTES_ACKED is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_BYTES_RECEIVED
#error "TTE_OFF_TP_BYTES_RECEIVED is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_TS_RECENT
#error "TTE_OFF_TP_TS_RECENT is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_TS_RECENT_STAMP
#error "TTE_OFF_TP_TS_RECENT_STAMP is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TP_RCV_TSECR
#error "TTE_OFF_TP_RCV_TSECR is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TASK_GROUP_LEADER
#error "TTE_OFF_TASK_GROUP_LEADER is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TASK_COMM
#error "TTE_OFF_TASK_COMM is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TASK_FLAGS
#error "TTE_OFF_TASK_FLAGS is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TASK_REAL_PARENT
#error "TTE_OFF_TASK_REAL_PARENT is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_TASK_TGID
#error "TTE_OFF_TASK_TGID is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKB_DEV
#error "TTE_OFF_SKB_DEV is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_NETDEV_NET
#error "TTE_OFF_NETDEV_NET is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKB_HEAD
#error "TTE_OFF_SKB_HEAD is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKB_NETWORK_HEADER
#error "TTE_OFF_SKB_NETWORK_HEADER is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif
#ifndef TTE_OFF_SKB_TRANSPORT_HEADER
#error "TTE_OFF_SKB_TRANSPORT_HEADER is not defined: the loader (tracer/kernel/program.py FIELDS) takes it from BTF"
#endif

/* ---- the decoder's idea of the record layout (tracer/model/record.py) ------------------ */
/* A mismatch fails the compile instead of decoding garbage. */
#ifdef TTE_EXPECT_RECORD_SIZE
_Static_assert(sizeof(struct tte_record) == TTE_EXPECT_RECORD_SIZE, "tte_record size drifted from tracer/model/record.py");
_Static_assert(__builtin_offsetof(struct tte_record, birth_ns) == TTE_EXPECT_OFF_BIRTH, "tte_record layout drifted");
_Static_assert(__builtin_offsetof(struct tte_record, owner_src) == TTE_EXPECT_OFF_OWNER_SRC, "tte_record layout drifted");
#endif

/* ---- fixed by the kernel ABI ----------------------------------------------------------- */
#define TTE_AF_INET 2
#define TTE_AF_INET6 10
#define TTE_IPPROTO_TCP 6

#endif /* TTE_CONFIG_BPF_H */
