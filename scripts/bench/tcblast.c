// tcblast: a full-duplex transcoding load for the transcoding benchmark (transcode.sh).
//
// Plays both RTP peers of N calls through a transcoder: each leg is one UDP socket that
// sends real audio of its codec (G.711 µ-law or Opus, a 1 kHz tone pre-encoded once at
// start, looped) at one packet per ptime, paced on absolute deadlines with the legs
// spread evenly over the ptime interval, and counts what the transcoder sends back to it.
// A leg's packets are expected back, transcoded, on its peer leg's socket: what leg i
// sent is compared with what its peer received, so loss is counted per direction.
//
// usage: tcblast --map FILE [options]
//   --map FILE        one leg per line: "LOCAL_PORT DEST_PORT CODEC TX_PT RX_PT PEER"
//                     CODEC pcmu|opus is what this leg sends (with payload type TX_PT) to
//                     127.0.0.1:DEST_PORT; RX_PT is the payload type it expects to receive
//                     (-1: any); PEER is the 0-based line whose socket receives its packets
//   --duration S      sending time after the warm-up, seconds (default 10)
//   --warmup S        sending time before the measured window, seconds (default 1);
//                     everything sent is counted for loss, the window only for the
//                     steady-state receive rate
//   --drain-ms MS     after the last send, wait this long for stragglers (default 300)
//   --ptime MS        packetisation, 10|20|40|60 (default 20)
//   --slack N         per direction per call, this many packets may be missing without
//                     counting as lost (codec start-up: a transcoder may swallow the first
//                     frame while its resampler/encoder fills; default 2)
//   --cpu N           pin this process to CPU N
// Output: one line "tcblast: key=value ..." (legs, sent, received, lost per direction,
// wrong payload types, steady-state receive rate, sender lateness); also the CPU time
// this process used, so a caller can tell a generator-bound run from a system-bound one.
// Exit 0 when nothing was lost (beyond the slack), nothing had a wrong payload type and
// the sender kept its schedule (p99 lateness < 5 ms); 1 otherwise; 2 on errors.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <opus/opus.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LEGS 4096
#define LOOP_FRAMES 50 /* pre-encoded frames per codec (1 s at 20 ms) */
#define PKT_MAX 1500
#define RX_VLEN 64
#define LATE_BUCKETS 1000 /* lateness histogram, 100 µs buckets up to 100 ms */

enum codec { PCMU, OPUS };

struct leg {
    int fd;
    uint16_t lport, dport;
    enum codec codec;
    int tx_pt, rx_pt, peer;
    uint16_t seq;
    uint32_t ts, ssrc;
    uint64_t next_ns; /* next send deadline */
    uint64_t frame;   /* frames sent */
    uint64_t sent, received, wrong_pt, received_window;
};

static struct leg legs[MAX_LEGS];
static int nlegs;
static uint8_t frames[2][LOOP_FRAMES][PKT_MAX];
static int frame_len[2][LOOP_FRAMES];
static uint64_t late_hist[LATE_BUCKETS + 1];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* G.711 µ-law encoder (ITU-T G.711, the usual segment search with bias 0x84). */
static uint8_t ulaw(int16_t pcm) {
    int s = pcm, sign = 0;
    if (s < 0) {
        s = -s;
        sign = 0x80;
    }
    if (s > 32635) s = 32635;
    s += 0x84;
    int exp = 7;
    for (int mask = 0x4000; (s & mask) == 0 && exp > 0; mask >>= 1) exp--;
    int mant = (s >> (exp + 3)) & 0x0f;
    return (uint8_t)~(sign | (exp << 4) | mant);
}

/* Pre-encodes LOOP_FRAMES frames of a 1 kHz tone at −10 dBov for both codecs. Opus is
 * encoded narrowband (8 kHz input), complexity 5, 24 kbit/s — what `mgw load` sends. */
static void encode_frames(int ptime) {
    int spf = 8 * ptime; /* samples per frame at 8 kHz */
    int16_t pcm[8 * 60];
    int err = 0;
    OpusEncoder *enc = opus_encoder_create(8000, 1, OPUS_APPLICATION_VOIP, &err);
    if (!enc || err != OPUS_OK) {
        fprintf(stderr, "tcblast: opus_encoder_create: %s\n", opus_strerror(err));
        exit(2);
    }
    opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(5));
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(24000));
    double amp = 32767.0 * pow(10.0, -10.0 / 20.0);
    for (int f = 0; f < LOOP_FRAMES; f++) {
        for (int i = 0; i < spf; i++) {
            long n = (long)f * spf + i;
            pcm[i] = (int16_t)lrint(amp * sin(2.0 * M_PI * 1000.0 * (double)n / 8000.0));
            frames[PCMU][f][i] = ulaw(pcm[i]);
        }
        frame_len[PCMU][f] = spf;
        int n = opus_encode(enc, pcm, spf, frames[OPUS][f], PKT_MAX - 12);
        if (n < 0) {
            fprintf(stderr, "tcblast: opus_encode: %s\n", opus_strerror(n));
            exit(2);
        }
        frame_len[OPUS][f] = n;
    }
    opus_encoder_destroy(enc);
}

static void load_map(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    char line[256], codec[16];
    while (fgets(line, sizeof line, f)) {
        unsigned lp, dp;
        int txpt, rxpt, peer;
        if (sscanf(line, "%u %u %15s %d %d %d", &lp, &dp, codec, &txpt, &rxpt, &peer) != 6) continue;
        if (nlegs >= MAX_LEGS) {
            fprintf(stderr, "tcblast: too many legs (max %d)\n", MAX_LEGS);
            exit(2);
        }
        if (lp == 0 || lp > 65535 || dp == 0 || dp > 65535 || txpt < 0 || txpt > 127 || rxpt > 127) {
            fprintf(stderr, "tcblast: bad map line: %s", line);
            exit(2);
        }
        struct leg *l = &legs[nlegs];
        l->lport = (uint16_t)lp;
        l->dport = (uint16_t)dp;
        if (strcasecmp(codec, "pcmu") == 0) l->codec = PCMU;
        else if (strcasecmp(codec, "opus") == 0) l->codec = OPUS;
        else {
            fprintf(stderr, "tcblast: unknown codec %s\n", codec);
            exit(2);
        }
        l->tx_pt = txpt;
        l->rx_pt = rxpt;
        l->peer = peer;
        nlegs++;
    }
    fclose(f);
    if (nlegs == 0) {
        fprintf(stderr, "tcblast: no legs in %s\n", path);
        exit(2);
    }
    for (int i = 0; i < nlegs; i++) {
        if (legs[i].peer < 0 || legs[i].peer >= nlegs) {
            fprintf(stderr, "tcblast: leg %d: peer %d out of range\n", i, legs[i].peer);
            exit(2);
        }
    }
}

static int open_sockets(void) {
    int epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    for (int i = 0; i < nlegs; i++) {
        struct leg *l = &legs[i];
        l->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (l->fd < 0) die("socket");
        int sz = 1 << 20;
        setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(l->lport)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(l->fd, (struct sockaddr *)&a, sizeof a) < 0) {
            fprintf(stderr, "tcblast: bind 127.0.0.1:%u: %s\n", l->lport, strerror(errno));
            exit(2);
        }
        a.sin_port = htons(l->dport);
        if (connect(l->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0) die("epoll_ctl");
        l->ssrc = (uint32_t)random();
        l->seq = (uint16_t)random();
        l->ts = (uint32_t)random();
    }
    return epfd;
}

static void send_one(struct leg *l, int ptime) {
    uint8_t pkt[PKT_MAX];
    int f = (int)(l->frame % LOOP_FRAMES);
    int n = frame_len[l->codec][f];
    pkt[0] = 0x80;
    pkt[1] = (uint8_t)(l->tx_pt & 0x7f);
    pkt[2] = (uint8_t)(l->seq >> 8);
    pkt[3] = (uint8_t)l->seq;
    uint32_t v[2] = {htonl(l->ts), htonl(l->ssrc)};
    memcpy(pkt + 4, v, 8);
    memcpy(pkt + 12, frames[l->codec][f], (size_t)n);
    /* A full socket buffer (or ECONNREFUSED from an earlier ICMP) loses this packet: it
     * still counts as sent, so the loss shows. */
    (void)send(l->fd, pkt, (size_t)n + 12, 0);
    l->sent++;
    l->frame++;
    l->seq++;
    l->ts += (uint32_t)(l->codec == OPUS ? 48 * ptime : 8 * ptime);
}

static void receive_all(int epfd, int window) {
    struct epoll_event evs[256];
    static uint8_t bufs[RX_VLEN][PKT_MAX];
    struct mmsghdr msgs[RX_VLEN];
    struct iovec iov[RX_VLEN];
    int n = epoll_wait(epfd, evs, 256, 0);
    for (int e = 0; e < n; e++) {
        struct leg *l = &legs[evs[e].data.u32];
        for (;;) {
            for (int k = 0; k < RX_VLEN; k++) {
                iov[k].iov_base = bufs[k];
                iov[k].iov_len = PKT_MAX;
                memset(&msgs[k].msg_hdr, 0, sizeof msgs[k].msg_hdr);
                msgs[k].msg_hdr.msg_iov = &iov[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            int got = recvmmsg(l->fd, msgs, RX_VLEN, MSG_DONTWAIT, NULL);
            if (got <= 0) break;
            for (int k = 0; k < got; k++) {
                if (msgs[k].msg_len < 12 || (bufs[k][0] & 0xc0) != 0x80) continue;
                if ((bufs[k][1] & 0x7f) >= 72 && (bufs[k][1] & 0x7f) <= 76) continue; /* RTCP */
                l->received++;
                if (window) l->received_window++;
                if (l->rx_pt >= 0 && (bufs[k][1] & 0x7f) != l->rx_pt) l->wrong_pt++;
            }
            if (got < RX_VLEN) break;
        }
    }
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    const char *map = NULL;
    double duration = 10, warmup = 1, drain_ms = 300;
    int ptime = 20, cpu = -1, slack = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "tcblast: %s needs a value (see the header of tcblast.c)\n", a);
            return 2;
        }
        if (!strcmp(a, "--map")) map = v;
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--drain-ms")) drain_ms = atof(v);
        else if (!strcmp(a, "--ptime")) ptime = atoi(v);
        else if (!strcmp(a, "--slack")) slack = atoi(v);
        else if (!strcmp(a, "--cpu")) cpu = atoi(v);
        else {
            fprintf(stderr, "tcblast: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!map || duration <= 0 || warmup < 0 || (ptime != 10 && ptime != 20 && ptime != 40 && ptime != 60)) {
        fprintf(stderr, "usage: tcblast --map FILE [--duration S] [--warmup S] [--drain-ms MS] "
                        "[--ptime 10|20|40|60] [--slack N] [--cpu N]\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
    }
    srandom((unsigned)now_ns());
    load_map(map);
    encode_frames(ptime);
    int epfd = open_sockets();

    uint64_t period = (uint64_t)ptime * 1000000ull;
    uint64_t t0 = now_ns() + 20000000ull; /* 20 ms to settle */
    for (int i = 0; i < nlegs; i++) legs[i].next_ns = t0 + period * (uint64_t)i / (uint64_t)nlegs;
    uint64_t t_window = t0 + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_window + (uint64_t)(duration * 1e9);
    double cpu0 = cpu_s();
    uint64_t late_n = 0;
    int next = 0; /* legs are visited round-robin: their deadlines are in that order */
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t_end) break;
        int window = now >= t_window;
        /* Send every packet that is due, oldest deadline first. */
        int sent_any = 0;
        for (int k = 0; k < nlegs; k++) {
            struct leg *l = &legs[next];
            if (l->next_ns > now || l->next_ns >= t_end) break;
            uint64_t late = (now - l->next_ns) / 100000ull;
            late_hist[late > LATE_BUCKETS ? LATE_BUCKETS : late]++;
            late_n++;
            send_one(l, ptime);
            l->next_ns += period;
            next = (next + 1) % nlegs;
            sent_any = 1;
        }
        receive_all(epfd, window);
        if (!sent_any) {
            uint64_t due = legs[next].next_ns;
            uint64_t nap = due > now ? due - now : 0;
            if (nap > 200000ull) nap = 200000ull; /* receive at least every 200 µs */
            if (nap > 20000ull) {
                struct timespec ts = {0, (long)nap};
                nanosleep(&ts, NULL);
            }
        }
    }
    uint64_t drain_end = now_ns() + (uint64_t)(drain_ms * 1e6);
    while (now_ns() < drain_end) {
        receive_all(epfd, 1); /* the window's last packets are still in flight */
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    double cpu_used = cpu_s() - cpu0;

    /* Direction totals: pcmu legs -> their (opus) peers is "a2b", opus legs -> peers "b2a". */
    uint64_t sent[2] = {0, 0}, recv[2] = {0, 0}, lost[2] = {0, 0}, wrong = 0, rx_window = 0;
    int legs_per[2] = {0, 0};
    for (int i = 0; i < nlegs; i++) {
        struct leg *l = &legs[i], *p = &legs[l->peer];
        sent[l->codec] += l->sent;
        recv[l->codec] += p->received;
        legs_per[l->codec]++;
        if (p->received + (uint64_t)slack < l->sent) lost[l->codec] += l->sent - p->received;
        wrong += l->wrong_pt;
        rx_window += l->received_window;
    }
    uint64_t acc = 0, p99 = 0, mx = 0;
    for (int b = 0; b <= LATE_BUCKETS; b++) {
        if (late_hist[b]) mx = (uint64_t)b;
        acc += late_hist[b];
        if (!p99 && acc * 100 >= late_n * 99) p99 = (uint64_t)b + 1;
    }
    double expect_window = (double)nlegs * duration * 1000.0 / ptime;
    printf("tcblast: legs=%d pcmu_legs=%d opus_legs=%d a2b_sent=%" PRIu64 " a2b_received=%" PRIu64
           " a2b_lost=%" PRIu64 " b2a_sent=%" PRIu64 " b2a_received=%" PRIu64 " b2a_lost=%" PRIu64
           " lost=%" PRIu64 " wrong_pt=%" PRIu64 " window_rx_pct=%.2f late_p99_us=%" PRIu64
           " late_max_us=%" PRIu64 " cpu_s=%.3f cpu_share=%.3f\n",
           nlegs, legs_per[PCMU], legs_per[OPUS], sent[PCMU], recv[PCMU], lost[PCMU], sent[OPUS],
           recv[OPUS], lost[OPUS], lost[PCMU] + lost[OPUS], wrong,
           expect_window > 0 ? 100.0 * (double)rx_window / expect_window : 0.0, p99 * 100, mx * 100,
           cpu_used, cpu_used / ((double)(drain_end - t0) / 1e9));
    int ok = lost[PCMU] + lost[OPUS] == 0 && wrong == 0 && p99 * 100 < 5000 &&
             recv[PCMU] + recv[OPUS] > 0;
    return ok ? 0 : 1;
}
