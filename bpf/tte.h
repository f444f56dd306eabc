/* tcptrace-explain: everything the BPF program (bpf/tte.bpf.c) and the Python side share.
 * Every record crossing the ring buffer is one struct tte_record; it opens with its type and a
 * common header, and carries the socket's context so user space needs no per-connection traffic.
 *
 * This file is the one source: tracer/model/abi.py parses its #defines, enums and structs (keep
 * to integer constants, enums with explicit values, and structs of __u8..__u64/char members),
 * and tests/unit/test_abi.py checks the parse against the C compiler. The program also asserts
 * the record's size and key offsets against the decoder's (TTE_EXPECT_*, bpf/config.bpf.h).
 */
#ifndef TTE_H
#define TTE_H

#define TTE_COMM_LEN 16

enum tte_record_type {
    TTE_REC_RESET_SENT = 1,     /* tcp:tcp_send_reset */
    TTE_REC_RESET_RECEIVED = 2, /* tcp:tcp_receive_reset */
    TTE_REC_ABORT = 3,          /* sock:inet_sk_error_report with a non-zero errno */
    TTE_REC_STATE = 4,          /* sock:inet_sock_set_state, only when asked (--states) */
    TTE_REC_OWNER = 5,          /* the holder of an accepted socket that produced a record, at its
                                 * close: pid/comm/thread are the process that closed it, cur_pid its
                                 * parent (real_parent's tgid); skaddr, netns and birth_ns name the
                                 * socket (tracer/explain/owners.py) */
};

/* Where the owner (pid, comm) of the socket came from; the decoder names these. */
enum tte_owner_source {
    TTE_OWNER_NONE = 0,
    TTE_OWNER_CONNECT = 1,  /* connect(): CLOSE->SYN_SENT runs in the caller's syscall */
    TTE_OWNER_LISTEN = 2,   /* listen(): CLOSE->LISTEN */
    TTE_OWNER_LISTENER = 3, /* accepted child: inherited from the listener on its port */
    TTE_OWNER_CLOSE = 4,    /* close()/shutdown(): ->FIN_WAIT1 or ->LAST_ACK */
    TTE_OWNER_IO = 5,       /* sock_send_length / sock_recv_length (fallback hooks) */
    TTE_OWNER_INODE = 6,    /* socket inode found in the table user space preloaded from /proc */
};

/* Record flags. */
#define TTE_F_SOCK_KNOWN   (1u << 0) /* the per-socket table knew this socket */
#define TTE_F_FROM_CLOSED  (1u << 1) /* context came from the recently-closed table (tuple join) */
#define TTE_F_TCP_FIELDS   (1u << 2) /* tcp_sock timestamps were read from the socket itself */
#define TTE_F_ORPHAN       (1u << 3) /* SOCK_DEAD: the application had closed the socket */
#define TTE_F_PEER_FIN     (1u << 4) /* SOCK_DONE: the peer's FIN had arrived */
#define TTE_F_KEEPALIVE    (1u << 5) /* SOCK_KEEPOPEN */
#define TTE_F_LINGER       (1u << 6) /* SOCK_LINGER set (with linger time 0: an abortive close) */
#define TTE_F_ACTIVE       (1u << 7) /* reset sent on the socket's own initiative (no skb) */
#define TTE_F_TIMEWAIT     (1u << 8) /* the socket was an inet_timewait_sock */
#define TTE_F_NO_SOCKET    (1u << 9) /* the kernel had no socket for the segment */
#define TTE_F_CONNECTED    (1u << 10) /* this host opened the connection (connect: the client side) */
#define TTE_F_ACCEPTED     (1u << 11) /* this host accepted it (a listener's child: the server side) */
#define TTE_F_SEQ          (1u << 12) /* snd_una..bytes_received were read from the full socket */
#define TTE_F_TS           (1u << 13) /* the timestamp option is in use: ts_recent and ts_echo are set */
#define TTE_F_SEG_SEQ      (1u << 14) /* seg_seq and seg_ack: the segment a passive reset answered */
#define TTE_F_SEG_TS       (1u << 15) /* seg_tsval and seg_tsecr: that segment's timestamp option */

struct tte_record {
    /* common header */
    __u8 type;        /* enum tte_record_type */
    __u8 family;      /* AF_INET / AF_INET6 */
    __u8 state;       /* TCP state at the event (kernel numbering; 0 = no socket) */
    __u8 old_state;   /* TTE_REC_STATE: the state left */
    __u32 flags;      /* TTE_F_* */
    __u64 ts_ns;      /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
    __u64 skaddr;     /* kernel socket address (reused after free: join with birth_ns) */
    __u64 cookie;     /* sock_cookie where the tracepoint has it, else 0 */
    __u64 ino;        /* socket inode (what /proc/PID/fd and ss -e show), 0 if none */
    __u32 netns;      /* network namespace inode, 0 if unknown */
    __u32 pid;        /* owner thread-group id, 0 if unknown */
    __u32 cur_pid;    /* thread-group id of whatever task ran the hook (not the owner) */
    __s32 reason;     /* reset reason (enum sk_rst_reason), -1 if the kernel gives none */
    __s32 err;        /* errno the application will see (positive), 0 if none */
    __u16 lport;      /* host order */
    __u16 rport;      /* host order */
    __u8 laddr[16];   /* IPv4 in the first 4 bytes */
    __u8 raddr[16];
    char comm[TTE_COMM_LEN];     /* owner's process name (thread-group leader) */
    char thread[TTE_COMM_LEN];   /* owner's thread name when the owner was captured */
    char cur_comm[TTE_COMM_LEN]; /* thread name of whatever task ran the hook */
    /* socket context, CLOCK_MONOTONIC ns, 0 = unknown */
    __u64 birth_ns;     /* connect / listen / accept clone seen */
    __u64 estab_ns;     /* -> ESTABLISHED */
    __u64 fin_ns;       /* the peer's FIN (ESTABLISHED -> CLOSE_WAIT) */
    __u64 close_ns;     /* local close or shutdown (-> FIN_WAIT1 / LAST_ACK) */
    __u64 state_ns;     /* last state change the table acts on (bpf/tte.bpf.c table_follows()) */
    __u64 last_send_ns; /* last data sent (tcp_sock.lsndtime, or the send hook) */
    __u64 last_recv_ns; /* last data received (icsk_ack.lrcvtime, or the recv hook) */
    __u64 last_ack_ns;  /* last ACK that acknowledged in-flight data (tcp_sock.rcv_tstamp) */
    __u64 destroy_ns;   /* TTE_F_FROM_CLOSED: when the full socket was destroyed */
    __u64 fin_last_send_ns; /* last data sent before the peer's FIN (snapshot at -> CLOSE_WAIT) */
    __u64 fin_last_recv_ns; /* last data received before the peer's FIN */
    __u32 retrans;       /* retransmits seen by tcp:tcp_retransmit_skb since birth */
    __u32 total_retrans; /* tcp_sock.total_retrans */
    __u32 srtt_us;       /* smoothed RTT, microseconds */
    __u32 unread_bytes;  /* rcv_nxt - copied_seq: received, not yet read by the application */
    __u32 unacked_bytes; /* write_seq - snd_una: written, not yet acknowledged by the peer */
    __u8 owner_src;      /* enum tte_owner_source */
    __u8 seg_flags;      /* TCP flags of the segment a passive reset answered (SYN=0x02, ACK=0x10) */
    __u8 _pad[2];
    /* Where the connection stood in sequence space: what identifies it on both hosts, through
     * NAT (tracer/explain/pairing.py). Appended: a recording's older, shorter records are this
     * layout's prefix, decoded with these fields 0. */
    __u32 snd_una;       /* TTE_F_SEQ: tcp_sock.snd_una */
    __u32 snd_nxt;       /* TTE_F_SEQ: tcp_sock.snd_nxt */
    __u32 rcv_nxt;       /* TTE_F_SEQ: tcp_sock.rcv_nxt */
    __u32 ts_recent;     /* TTE_F_TS: rx_opt.ts_recent, the peer's last TSval this side accepted */
    __u32 ts_echo;       /* TTE_F_TS: rx_opt.rcv_tsecr, the peer's last echo of this side's TSval */
    __u32 seg_seq;       /* TTE_F_SEG_SEQ: the answered segment's sequence number (host order) */
    __u32 seg_ack;       /* TTE_F_SEG_SEQ: its acknowledgment number */
    __u32 seg_tsval;     /* TTE_F_SEG_TS: its TSval */
    __u32 seg_tsecr;     /* TTE_F_SEG_TS: its TSecr */
    __u32 _pad2;
    __u64 bytes_acked;   /* TTE_F_SEQ: tcp_sock.bytes_acked (RFC 4898), moves with snd_una */
    __u64 bytes_received; /* TTE_F_SEQ: tcp_sock.bytes_received, moves with rcv_nxt */
};

/* Per-CPU counters (BPF_PERCPU_ARRAY stats), read at scrape time and for loss accounting. */
#define TTE_STAT_LOST          0   /* ring-buffer reservation failed: a record was lost */
#define TTE_STAT_FILTERED      1   /* dropped by a --pid/--port/netns filter */
#define TTE_STAT_RECORDS       2   /* records submitted */
#define TTE_STAT_SOCKS_INSERT  3   /* per-socket table inserts */
#define TTE_STAT_SOCKS_DELETE  4   /* per-socket table deletes (tcp_destroy_sock) */
#define TTE_STAT_RST_RECEIVED  5
#define TTE_STAT_CLOSED_INSERT 6
#define TTE_STAT_SUMMARIZED    7   /* over the per-CPU rate: counted in the storm map instead */
#define TTE_STAT_STORM_FULL    8   /* over the rate and the storm map was full: counted only here */
#define TTE_STAT_RST_SENT_BASE 16  /* + reason (0..63); reason unknown counts at +63 */
#define TTE_STAT_ABORT_BASE    80  /* + errno (0..159) */
#define TTE_STAT_STATE_BASE    240 /* + old * 16 + new */
#define TTE_STAT_MAX           496

/* Key of the listeners map: the listening socket's network namespace and local port, as
 * (netns << TTE_LISTENER_NETNS_SHIFT) | port; user space preloads listeners that predate it. */
#define TTE_LISTENER_NETNS_SHIFT 16
/* struct tte_listener flags: a --pid process holds this listener (user space, at start-up), so
 * its accepted connections are kept until their holder decides (tracer/explain/owners.py). */
#define TTE_LISTENER_TRACED 1

/* A storm summary bucket: events beyond the per-CPU rate are counted per key, not sent. */
struct tte_storm_key {
    __u8 type;
    __u8 state;
    __u16 family;
    __s32 reason;
    __s32 err;
    __u32 pid;
    __u16 port;       /* the service-side port: local if this side accepted, else remote */
    __u8 syn;         /* a reset sent with no socket that answered a SYN (to `port`, this host's) */
    __u8 _pad;
    __u8 raddr[16];
    char comm[TTE_COMM_LEN];
};

#endif /* TTE_H */
