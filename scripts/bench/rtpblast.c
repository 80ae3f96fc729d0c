// rtpblast: an RTP load generator for relay benchmarks (mgw and its peers).
//
// Sends RTP on K streams at a total target packet rate, paced against absolute
// deadlines (the loop busy-polls, so a packet leaves within a few microseconds of its
// deadline), batched with sendmmsg; receives what the relay sends back on the same K
// sockets with recvmmsg; reports sent, received, lost, reordered, duplicated, misrouted
// and one-way delay percentiles. Each payload carries a magic, a trial nonce, the stream
// index, a per-stream and a global sequence number and the CLOCK_MONOTONIC send time in
// nanoseconds, so the relay may rewrite the RTP header freely.
//
// usage: rtpblast --map FILE [options]
//   --map FILE        one stream per line: "LOCAL_PORT DEST_PORT [PEER_INDEX]"; the stream
//                     sends from 127.0.0.1:LOCAL_PORT to DEST_IP:DEST_PORT and expects its
//                     packets back on the socket of stream PEER_INDEX (0-based), if given
//   --ip A.B.C.D      destination address (default 127.0.0.1)
//   --rate PPS        total packets per second, all streams together (default 100000)
//   --duration S      trial length in seconds, may be fractional (default 2)
//   --burst N         at most N consecutive packets per stream per sendmmsg (default 4)
//   --size BYTES      UDP payload size incl. the 12-byte RTP header (default 172 = 20 ms PCMU)
//   --drain-ms MS     after the last send, wait this long for stragglers (default 50);
//                     anything not back by then counts as lost
//   --warmup N        before each trial send N packets per stream (not counted) so relays
//                     that learn addresses from traffic are ready (default 3)
//   --cpu N           pin this process to CPU N (default: leave the affinity alone)
//   --search LO:HI    binary-search the highest rate in [LO, HI] with zero loss
//   --precision PCT   stop the search when HI-LO <= PCT % of LO (default 2)
//   --retries N       repeat a failed trial up to N times before calling it failed (default 1)
//   --no-connect      do not connect() each socket to its destination (connecting caches
//                     the route; it also means a stream's replies must come from the port it
//                     sends to, which holds for symmetric relays)
// Output: one "trial ..." line per trial; with --search a final "zero_loss_pps=N".
// Exit status 0 when the (last) trial passed or the search found a rate, 1 otherwise,
// 2 on usage or system errors.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x4d475742u /* "MGWB" */
#define MAX_STREAMS 4096
#define MAX_BURST 64
#define RX_VLEN 64
#define HIST_US 1000000 /* delay histogram: 1 us buckets up to 1 s */
#define PKT_MAX 1500

struct payload {
    uint32_t magic;
    uint32_t nonce;
    uint32_t stream;
    uint32_t flags; /* 1 = warm-up, not counted */
    uint64_t sseq;  /* per-stream sequence */
    uint64_t gseq;  /* global sequence within the trial */
    uint64_t tx_ns; /* CLOCK_MONOTONIC at send */
} __attribute__((packed));

struct stream {
    int fd;
    uint16_t lport, dport;
    int peer; /* expected receiving stream index, -1 = unknown */
    struct sockaddr_in dst;
    uint16_t rtp_seq;
    uint32_t rtp_ts, ssrc;
    uint64_t sseq;
    int64_t last_rx_sseq; /* highest per-stream sequence received (as sent by this stream) */
};

struct result {
    uint64_t sent, received, lost, reordered, dup, misrouted;
    double p50_us, p99_us, max_us, achieved_pps;
};

static struct stream streams[MAX_STREAMS];
static int nstreams;
static int epfd;
static const char *dst_ip = "127.0.0.1";
static int pkt_size = 172;
static int burst = 4;
static double drain_ms = 50;
static int warmup = 3;
static int do_connect = 1;
static uint32_t *hist;
static uint8_t *seen;
static size_t seen_cap;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void load_map(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned lp, dp;
        int peer = -1;
        int n = sscanf(line, "%u %u %d", &lp, &dp, &peer);
        if (n < 2) continue;
        if (nstreams >= MAX_STREAMS) {
            fprintf(stderr, "rtpblast: too many streams (max %d)\n", MAX_STREAMS);
            exit(2);
        }
        if (lp == 0 || lp > 65535 || dp == 0 || dp > 65535) {
            fprintf(stderr, "rtpblast: bad port in map line: %s", line);
            exit(2);
        }
        struct stream *s = &streams[nstreams];
        s->lport = (uint16_t)lp;
        s->dport = (uint16_t)dp;
        s->peer = n >= 3 ? peer : -1;
        nstreams++;
    }
    fclose(f);
    if (nstreams == 0) {
        fprintf(stderr, "rtpblast: no streams in %s\n", path);
        exit(2);
    }
}

static void open_sockets(void) {
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    for (int i = 0; i < nstreams; i++) {
        struct stream *s = &streams[i];
        s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0) die("socket");
        int buf = 4 << 20;
        /* FORCE works as root and ignores rmem_max; fall back to the capped option. */
        if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0)
            setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        if (setsockopt(s->fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0)
            setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(s->lport)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(s->fd, (struct sockaddr *)&a, sizeof a) < 0) {
            fprintf(stderr, "rtpblast: bind 127.0.0.1:%u: %s\n", s->lport, strerror(errno));
            exit(2);
        }
        s->dst.sin_family = AF_INET;
        s->dst.sin_port = htons(s->dport);
        if (inet_pton(AF_INET, dst_ip, &s->dst.sin_addr) != 1) {
            fprintf(stderr, "rtpblast: bad --ip %s\n", dst_ip);
            exit(2);
        }
        if (do_connect && connect(s->fd, (struct sockaddr *)&s->dst, sizeof s->dst) < 0)
            die("connect");
        s->ssrc = 0x10000000u + (uint32_t)i;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
    }
}

/* Build one packet for stream s into buf. */
static void fill(uint8_t *buf, struct stream *s, uint32_t idx, uint32_t nonce, uint32_t flags,
                 uint64_t gseq) {
    buf[0] = 0x80;
    buf[1] = 0; /* PCMU */
    buf[2] = (uint8_t)(s->rtp_seq >> 8);
    buf[3] = (uint8_t)s->rtp_seq;
    uint32_t ts = htonl(s->rtp_ts), ssrc = htonl(s->ssrc);
    memcpy(buf + 4, &ts, 4);
    memcpy(buf + 8, &ssrc, 4);
    s->rtp_seq++;
    s->rtp_ts += 160;
    struct payload p = {.magic = MAGIC, .nonce = nonce, .stream = idx, .flags = flags,
                        .sseq = s->sseq++, .gseq = gseq, .tx_ns = now_ns()};
    memcpy(buf + 12, &p, sizeof p);
}

/* Send n packets (n <= MAX_BURST) on stream idx; returns how many the kernel took. */
static int send_burst(uint32_t idx, int n, uint32_t nonce, uint32_t flags, uint64_t gseq0) {
    static uint8_t bufs[MAX_BURST][PKT_MAX];
    struct mmsghdr msgs[MAX_BURST];
    struct iovec iov[MAX_BURST];
    struct stream *s = &streams[idx];
    for (int i = 0; i < n; i++) {
        fill(bufs[i], s, idx, nonce, flags, gseq0 + (uint64_t)i);
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = (size_t)pkt_size;
        memset(&msgs[i], 0, sizeof msgs[i]);
        if (!do_connect) {
            msgs[i].msg_hdr.msg_name = &s->dst;
            msgs[i].msg_hdr.msg_namelen = sizeof s->dst;
        }
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int done = 0;
    while (done < n) {
        int r = sendmmsg(s->fd, msgs + done, (unsigned)(n - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* ECONNREFUSED (ICMP from a closed port) or a full buffer: count as sent and
               lost, the receiver will not see them. */
            if (errno == ECONNREFUSED || errno == EAGAIN || errno == ENOBUFS) {
                done++;
                continue;
            }
            die("sendmmsg");
        }
        done += r;
    }
    return done;
}

/* Receive everything queued; account packets of trial `nonce` when r != NULL. */
static void receive_all(uint32_t nonce, struct result *r, uint64_t total) {
    static uint8_t bufs[RX_VLEN][PKT_MAX];
    static struct mmsghdr msgs[RX_VLEN];
    static struct iovec iov[RX_VLEN];
    struct epoll_event evs[256];
    int ne = epoll_wait(epfd, evs, 256, 0);
    for (int e = 0; e < ne; e++) {
        uint32_t rxidx = evs[e].data.u32;
        int fd = streams[rxidx].fd;
        for (;;) {
            for (int i = 0; i < RX_VLEN; i++) {
                iov[i].iov_base = bufs[i];
                iov[i].iov_len = PKT_MAX;
                memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int n = recvmmsg(fd, msgs, RX_VLEN, MSG_DONTWAIT, NULL);
            if (n <= 0) break;
            uint64_t t = now_ns();
            for (int i = 0; i < n && r; i++) {
                if (msgs[i].msg_len < 12 + sizeof(struct payload)) continue;
                struct payload p;
                memcpy(&p, bufs[i] + 12, sizeof p);
                if (p.magic != MAGIC || p.nonce != nonce || (p.flags & 1)) continue;
                if (p.gseq >= total || p.stream >= (uint32_t)nstreams) continue;
                uint8_t bit = (uint8_t)(1u << (p.gseq & 7));
                if (seen[p.gseq >> 3] & bit) {
                    r->dup++;
                    continue;
                }
                seen[p.gseq >> 3] |= bit;
                r->received++;
                struct stream *s = &streams[p.stream];
                if (s->peer >= 0 && (uint32_t)s->peer != rxidx) r->misrouted++;
                if ((int64_t)p.sseq < s->last_rx_sseq) r->reordered++;
                else s->last_rx_sseq = (int64_t)p.sseq;
                uint64_t d = t > p.tx_ns ? (t - p.tx_ns) / 1000 : 0;
                if ((double)(t > p.tx_ns ? t - p.tx_ns : 0) / 1000.0 > r->max_us)
                    r->max_us = (double)(t - p.tx_ns) / 1000.0;
                hist[d < HIST_US ? d : HIST_US - 1]++;
            }
            if (n < RX_VLEN) break;
        }
    }
}

static double percentile(uint64_t count, double q) {
    if (count == 0) return 0;
    uint64_t want = (uint64_t)((double)count * q);
    if (want >= count) want = count - 1;
    uint64_t acc = 0;
    for (int i = 0; i < HIST_US; i++) {
        acc += hist[i];
        if (acc > want) return (double)i;
    }
    return HIST_US - 1;
}

static uint32_t trial_no;

static struct result run_trial(double rate, double duration) {
    struct result r;
    memset(&r, 0, sizeof r);
    uint32_t nonce = ((uint32_t)getpid() << 12) ^ (++trial_no) ^ (uint32_t)now_ns();
    uint64_t total = (uint64_t)(rate * duration);
    if (total == 0) total = 1;
    size_t need = (size_t)(total / 8 + 1);
    if (need > seen_cap) {
        free(seen);
        seen = malloc(need);
        if (!seen) die("malloc");
        seen_cap = need;
    }
    memset(seen, 0, need);
    memset(hist, 0, sizeof(uint32_t) * HIST_US);
    for (int i = 0; i < nstreams; i++) streams[i].last_rx_sseq = -1;

    /* Warm-up: a few packets per stream, spread over ~20 ms, then drain 100 ms. */
    for (int w = 0; w < warmup; w++) {
        for (int i = 0; i < nstreams; i++) send_burst((uint32_t)i, 1, nonce, 1, 0);
        uint64_t until = now_ns() + 7000000ull;
        while (now_ns() < until) receive_all(nonce, NULL, 0);
    }
    uint64_t until = now_ns() + 100000000ull;
    while (now_ns() < until) receive_all(nonce, NULL, 0);
    for (int i = 0; i < nstreams; i++) streams[i].sseq = 0;

    double ns_per_pkt = 1e9 / rate;
    uint64_t start = now_ns() + 1000000ull, last_send = start;
    uint64_t sent = 0;
    uint32_t cur = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (sent < total) {
            if (t >= start) {
                /* packets whose deadline start + i*ns_per_pkt has passed */
                uint64_t due = (uint64_t)((double)(t - start) / ns_per_pkt) + 1;
                if (due > total) due = total;
                while (sent < due) {
                    uint64_t n = due - sent;
                    if (n > (uint64_t)burst) n = (uint64_t)burst;
                    send_burst(cur, (int)n, nonce, 0, sent);
                    sent += n;
                    cur = (cur + 1) % (uint32_t)nstreams;
                }
                if (sent == total) last_send = now_ns();
            }
        } else if (t >= last_send + (uint64_t)(drain_ms * 1e6)) {
            break;
        }
        receive_all(nonce, &r, total);
    }
    r.sent = sent;
    r.lost = sent > r.received ? sent - r.received : 0;
    r.p50_us = percentile(r.received, 0.50);
    r.p99_us = percentile(r.received, 0.99);
    double span = (double)(last_send - start) / 1e9;
    r.achieved_pps = span > 0 ? (double)(sent > 1 ? sent - 1 : sent) / span : rate;
    return r;
}

static int report(double rate, const struct result *r) {
    /* A trial passes with zero loss and when the generator kept its schedule: sending the
       whole trial took at most 3 % longer than planned (short preemptions by other load on
       the generator's core are caught up; a saturated generator falls further behind). */
    int gen_ok = r->achieved_pps >= rate * 0.97;
    int pass = r->lost == 0 && r->misrouted == 0 && gen_ok;
    printf("trial rate=%.0f sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64
           " reordered=%" PRIu64 " dup=%" PRIu64 " misrouted=%" PRIu64
           " p50_us=%.0f p99_us=%.0f max_us=%.0f achieved_pps=%.0f result=%s\n",
           rate, r->sent, r->received, r->lost, r->reordered, r->dup, r->misrouted, r->p50_us,
           r->p99_us, r->max_us, r->achieved_pps,
           pass ? "PASS" : (gen_ok ? "FAIL" : "FAIL-GENERATOR-BEHIND"));
    fflush(stdout);
    return pass;
}

static int trial_with_retries(double rate, double duration, int retries) {
    for (int i = 0; i <= retries; i++) {
        struct result r = run_trial(rate, duration);
        if (report(rate, &r)) return 1;
        if (r.received == 0) return 0; /* nothing at all came back: no point retrying */
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *map = NULL;
    double rate = 100000, duration = 2, precision = 2, lo = 0, hi = 0;
    int cpu = -1, retries = 1, search = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (++i, 1))
        if (ARG("--map")) map = v;
        else if (ARG("--ip")) dst_ip = v;
        else if (ARG("--rate")) rate = atof(v);
        else if (ARG("--duration")) duration = atof(v);
        else if (ARG("--burst")) burst = atoi(v);
        else if (ARG("--size")) pkt_size = atoi(v);
        else if (ARG("--drain-ms")) drain_ms = atof(v);
        else if (ARG("--warmup")) warmup = atoi(v);
        else if (ARG("--cpu")) cpu = atoi(v);
        else if (ARG("--precision")) precision = atof(v);
        else if (ARG("--retries")) retries = atoi(v);
        else if (strcmp(a, "--no-connect") == 0) do_connect = 0;
        else if (ARG("--search")) {
            if (sscanf(v, "%lf:%lf", &lo, &hi) != 2 || lo <= 0 || hi <= lo) {
                fprintf(stderr, "rtpblast: --search wants LO:HI with 0 < LO < HI\n");
                return 2;
            }
            search = 1;
        } else {
            fprintf(stderr, "rtpblast: unknown or incomplete argument %s (see the header of rtpblast.c)\n", a);
            return 2;
        }
#undef ARG
    }
    if (!map || rate <= 0 || duration <= 0 || burst < 1 || burst > MAX_BURST ||
        pkt_size < (int)(12 + sizeof(struct payload)) || pkt_size > PKT_MAX || retries < 0) {
        fprintf(stderr, "rtpblast: need --map FILE; --burst 1..%d; --size %zu..%d\n", MAX_BURST,
                12 + sizeof(struct payload), PKT_MAX);
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
    }
    hist = calloc(HIST_US, sizeof(uint32_t));
    if (!hist) die("calloc");
    load_map(map);
    open_sockets();
    if (!search) return trial_with_retries(rate, duration, retries) ? 0 : 1;

    /* Make sure LO passes (halve it until it does), then bisect. */
    while (!trial_with_retries(lo, duration, retries)) {
        hi = lo;
        lo /= 2;
        if (lo < 1000) {
            printf("zero_loss_pps=0\n");
            return 1;
        }
    }
    while (hi - lo > lo * precision / 100.0 && hi - lo > 500) {
        double mid = (lo + hi) / 2;
        if (trial_with_retries(mid, duration, retries)) lo = mid;
        else hi = mid;
    }
    printf("zero_loss_pps=%.0f\n", lo);
    return 0;
}
