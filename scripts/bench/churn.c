/* churn: a loopback TCP load generator for the tcptrace-explain benchmark.
 *
 *   churn --mode fin|rst|rr|cfin|sfin|abort [--threads N] [--duration S] [--rate R] [--port P] [--max N]
 *
 *   fin   connection churn, clean close: connect, send 1 byte, read 1 byte, client closes first
 *   rst   connection churn, every connection reset: as fin, but the client closes with
 *         SO_LINGER {1, 0}, so each close sends an RST (TCP_STATE)
 *   rr    request/response: each thread keeps one connection and exchanges 64-byte messages
 *   Pure connect/close, no payload (a health checker, a port scanner, a load balancer's checks):
 *   cfin  the client closes first (FIN), the server closes on end of file: TIME_WAIT on the client
 *   sfin  the server closes first (FIN) right after accept, the client on end of file: TIME_WAIT
 *         on the server
 *   abort the client closes with SO_LINGER {1, 0} right after connect: one RST, no TIME_WAIT
 *
 * --rate R paces the whole run at R operations per second (0: saturated). --max stops after N
 * operations. The server runs in the same process (one thread per client thread). Prints one
 * JSON line: {"mode":..,"ops":..,"seconds":..,"ops_per_s":..}. Loopback only (127.0.0.1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { FIN, RST, RR, CFIN, SFIN, ABORT };
static const char *const mode_names[] = {"fin", "rst", "rr", "cfin", "sfin", "abort"};
static enum mode g_mode = FIN;
static int g_threads = 2, g_port = 0;
static double g_duration = 5.0, g_rate = 0;
static long g_max = 0;
static atomic_long g_ops;
static atomic_int g_stop;
static int g_listen_fd;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Bound every blocking call: with linger-0 closes there is no TIME_WAIT, an ephemeral port can
 * be reused at once and a SYN may meet the old connection's remains; never hang on that. */
static void timeouts(int s)
{
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int full_read(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += r;
    }
    return 0;
}

static void *server_thread(void *arg)
{
    (void)arg;
    char buf[64];
    while (!atomic_load(&g_stop)) {
        int c = accept(g_listen_fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        timeouts(c);
        if (g_mode == RR) {
            while (full_read(c, buf, sizeof buf) == 0)
                if (write(c, buf, sizeof buf) != sizeof buf)
                    break;
        } else if (g_mode == SFIN) {
            /* close first: nothing to read */
        } else if (g_mode == CFIN || g_mode == ABORT) {
            while (read(c, buf, sizeof buf) > 0)
                ; /* until the client's FIN (or RST) */
        } else {
            if (read(c, buf, 1) == 1 && write(c, buf, 1) == 1) {
                /* wait for the client's FIN (or RST), then close */
                while (read(c, buf, sizeof buf) > 0)
                    ;
            }
        }
        close(c);
    }
    return NULL;
}

static struct sockaddr_in g_addr;


static void pace(double start, long done_total)
{
    if (g_rate <= 0)
        return;
    double due = start + done_total / g_rate;
    double t = now();
    if (due > t) {
        struct timespec ts = {(time_t)(due - t), (long)((due - t - (time_t)(due - t)) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int budget_left(void)
{
    return !atomic_load(&g_stop) && (!g_max || atomic_load(&g_ops) < g_max);
}

static void *client_thread(void *arg)
{
    double start = *(double *)arg;
    char buf[64] = {0};
    if (g_mode == RR) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(s, (struct sockaddr *)&g_addr, sizeof g_addr) < 0)
            die("connect");
        while (budget_left()) {
            if (write(s, buf, sizeof buf) != sizeof buf || full_read(s, buf, sizeof buf) < 0)
                break;
            long n = atomic_fetch_add(&g_ops, 1) + 1;
            pace(start, n);
        }
        close(s);
        return NULL;
    }
    while (budget_left()) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0)
            die("socket");
        timeouts(s);
        if (connect(s, (struct sockaddr *)&g_addr, sizeof g_addr) < 0) {
            close(s);
            continue;
        }
        if (g_mode == FIN || g_mode == RST) {
            if (write(s, buf, 1) == 1)
                (void)read(s, buf, 1);
        } else if (g_mode == SFIN) {
            while (read(s, buf, sizeof buf) > 0)
                ; /* until the server's FIN */
        }
        if (g_mode == RST || g_mode == ABORT) {
            struct linger l = {1, 0};
            setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(s);
        long n = atomic_fetch_add(&g_ops, 1) + 1;
        pace(start, n);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mode")) {
            int m = -1;
            for (int k = 0; k < (int)(sizeof mode_names / sizeof *mode_names); k++)
                if (!strcmp(argv[i + 1], mode_names[k]))
                    m = k;
            if (m < 0) {
                fprintf(stderr, "churn: unknown mode %s\n", argv[i + 1]);
                return 2;
            }
            g_mode = (enum mode)m;
        }
        else if (!strcmp(argv[i], "--threads"))
            g_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration"))
            g_duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            g_rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--port"))
            g_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max"))
            g_max = atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: churn --mode fin|rst|rr|cfin|sfin|abort [--threads N] [--duration S] [--rate R] "
                            "[--port P] [--max N]\n");
            return 2;
        }
    }
    g_listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(g_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    g_addr.sin_family = AF_INET;
    g_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_addr.sin_port = htons(g_port);
    if (bind(g_listen_fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0)
        die("bind");
    socklen_t len = sizeof g_addr;
    getsockname(g_listen_fd, (struct sockaddr *)&g_addr, &len);
    if (listen(g_listen_fd, 4096) < 0)
        die("listen");
    struct timeval tv = {0, 200000}; /* accept wakes up to notice the end */
    setsockopt(g_listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    pthread_t srv[64], cli[64];
    if (g_threads > 64)
        g_threads = 64;
    for (int i = 0; i < g_threads; i++)
        pthread_create(&srv[i], NULL, server_thread, NULL);
    double start = now();
    for (int i = 0; i < g_threads; i++)
        pthread_create(&cli[i], NULL, client_thread, &start);
    while (now() - start < g_duration && (!g_max || atomic_load(&g_ops) < g_max)) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&g_stop, 1);
    double elapsed = now() - start;
    long ops = atomic_load(&g_ops);
    for (int i = 0; i < g_threads; i++)
        pthread_join(cli[i], NULL);
    shutdown(g_listen_fd, SHUT_RDWR);
    for (int i = 0; i < g_threads; i++)
        pthread_join(srv[i], NULL);
    printf("{\"mode\":\"%s\",\"ops\":%ld,\"seconds\":%.3f,\"ops_per_s\":%.1f}\n",
           mode_names[g_mode], ops, elapsed, ops / elapsed);
    return 0;
}
