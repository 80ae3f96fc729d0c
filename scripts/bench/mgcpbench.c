// mgcpbench: MGCP control-plane load. Keeps N transactions outstanding against a gateway,
// each slot cycling CRCX -> DLCX on its own endpoint (rtpbridge/<slot+1>@DOMAIN), and
// reports completed transactions (a CRCX or a DLCX answered with a final response) per
// second. One UDP socket, recvmmsg/sendmmsg, one thread.
//
// usage: mgcpbench --gw IP:PORT [--domain D] [--outstanding N] [--duration S] [--warmup S]
//                  [--hex] [--cpu N]
//        mgcpbench --responder PORT [--cpu N]
//   --hex        endpoint numbers in hex (osmo-mgw names rtpbridge/N in hex)
//   --responder  a trivial gateway stand-in: answers CRCX with "200 tid OK" + "I: 1",
//                everything else with "250"/"200"; used to show the client is not the limit.
// Output: "mgcp txn_per_s=... pairs_per_s=... completed=... errors=... retransmits=...
//          p50_us=... p99_us=..."; exit 0 when at least one transaction completed
//          and none failed.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 1024
#define VLEN 64
#define MSG_MAX 1500
#define HIST_US 1000000

enum op { OP_CRCX, OP_DLCX };

struct slot {
    enum op op;
    uint64_t tid;
    uint64_t sent_ns;
    int waiting; /* sent, no final response yet */
    char connid[64];
    int len;
    char msg[512];
};

static struct slot slots[MAX_SLOTS];
static int nslots = 32;
static const char *domain = "mgw";
static int hexnames;
static uint64_t tid_base;
static uint64_t tid_counter;
static uint32_t *hist;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) perror("sched_setaffinity");
}

static int parse_addr(const char *s, struct sockaddr_in *a) {
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* Prepare slot i's next command (op already set). */
static void build(int i) {
    struct slot *s = &slots[i];
    s->tid = tid_base + (tid_counter++) * (uint64_t)nslots + (uint64_t)i;
    char ep[64];
    if (hexnames) snprintf(ep, sizeof ep, "rtpbridge/%x@%s", i + 1, domain);
    else snprintf(ep, sizeof ep, "rtpbridge/%d@%s", i + 1, domain);
    if (s->op == OP_CRCX)
        s->len = snprintf(s->msg, sizeof s->msg,
                          "CRCX %" PRIu64 " %s MGCP 1.0\r\nC: %x\r\nL: p:20, a:PCMU\r\nM: recvonly\r\n",
                          s->tid, ep, 0x4000 + i);
    else if (s->connid[0]) {
        char conn[sizeof s->connid];
        memcpy(conn, s->connid, sizeof conn);
        s->len = snprintf(s->msg, sizeof s->msg, "DLCX %" PRIu64 " %s MGCP 1.0\r\nC: %x\r\nI: %s\r\n",
                          s->tid, ep, 0x4000 + i, conn);
    }
    else /* after an error: delete whatever the call has on the endpoint */
        s->len = snprintf(s->msg, sizeof s->msg, "DLCX %" PRIu64 " %s MGCP 1.0\r\nC: %x\r\n", s->tid,
                          ep, 0x4000 + i);
}

static int responder(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("responder bind");
        return 2;
    }
    printf("mgcpbench: responder ready on 127.0.0.1:%d\n", port);
    fflush(stdout);
    static char in[VLEN][MSG_MAX], out[VLEN][128];
    struct sockaddr_in from[VLEN];
    struct mmsghdr msgs[VLEN], replies[VLEN];
    struct iovec iov[VLEN], oiov[VLEN];
    for (;;) {
        for (int i = 0; i < VLEN; i++) {
            iov[i].iov_base = in[i];
            iov[i].iov_len = MSG_MAX - 1;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int n = recvmmsg(fd, msgs, VLEN, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return 2;
        }
        int k = 0;
        for (int i = 0; i < n; i++) {
            in[i][msgs[i].msg_len] = 0;
            char verb[8] = "", tid[16] = "";
            if (sscanf(in[i], "%7s %15s", verb, tid) != 2) continue;
            int len = strcmp(verb, "CRCX") == 0
                          ? snprintf(out[k], sizeof out[k], "200 %s OK\r\nI: 1\r\n", tid)
                          : snprintf(out[k], sizeof out[k], "%s %s OK\r\n",
                                     strcmp(verb, "DLCX") == 0 ? "250" : "200", tid);
            oiov[k].iov_base = out[k];
            oiov[k].iov_len = (size_t)len;
            memset(&replies[k].msg_hdr, 0, sizeof replies[k].msg_hdr);
            replies[k].msg_hdr.msg_iov = &oiov[k];
            replies[k].msg_hdr.msg_iovlen = 1;
            replies[k].msg_hdr.msg_name = &from[i];
            replies[k].msg_hdr.msg_namelen = msgs[i].msg_hdr.msg_namelen;
            k++;
        }
        if (k > 0 && sendmmsg(fd, replies, (unsigned)k, 0) < 0) perror("sendmmsg");
    }
}

int main(int argc, char **argv) {
    const char *gw = NULL;
    double duration = 5, warmup = 0.5;
    int cpu = -1, resp_port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (++i, 1))
        if (ARG("--gw")) gw = v;
        else if (ARG("--domain")) domain = v;
        else if (ARG("--outstanding")) nslots = atoi(v);
        else if (ARG("--duration")) duration = atof(v);
        else if (ARG("--warmup")) warmup = atof(v);
        else if (ARG("--cpu")) cpu = atoi(v);
        else if (ARG("--responder")) resp_port = atoi(v);
        else if (strcmp(a, "--hex") == 0) hexnames = 1;
        else {
            fprintf(stderr, "mgcpbench: unknown or incomplete argument %s\n", a);
            return 2;
        }
#undef ARG
    }
    pin(cpu);
    if (resp_port > 0) return responder(resp_port);
    struct sockaddr_in dst;
    if (!gw || parse_addr(gw, &dst) < 0 || nslots < 1 || nslots > MAX_SLOTS || duration <= 0) {
        fprintf(stderr, "mgcpbench: need --gw IP:PORT, --outstanding 1..%d\n", MAX_SLOTS);
        return 2;
    }
    hist = calloc(HIST_US, sizeof(uint32_t));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!hist || fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) < 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
        perror("mgcpbench: socket");
        return 2;
    }
    srand((unsigned)(now_ns() ^ (uint64_t)getpid()));
    tid_base = 1000 + (uint64_t)(rand() % 100000000);

    static char in[VLEN][MSG_MAX];
    struct mmsghdr msgs[VLEN], outm[MAX_SLOTS];
    struct iovec iov[VLEN], oiov[MAX_SLOTS];
    int pending[MAX_SLOTS], npend = 0;
    uint64_t completed = 0, measured = 0, errors = 0, retrans = 0, pairs = 0;
    uint64_t t0 = now_ns(), mstart = t0 + (uint64_t)(warmup * 1e9);
    uint64_t mend = mstart + (uint64_t)(duration * 1e9), stop_at = mend;
    int in_flight = 0;

    for (int i = 0; i < nslots; i++) {
        slots[i].op = OP_CRCX;
        build(i);
        pending[npend++] = i;
    }
    for (;;) {
        uint64_t t = now_ns();
        /* flush pending sends */
        if (npend > 0) {
            for (int k = 0; k < npend; k++) {
                struct slot *s = &slots[pending[k]];
                s->sent_ns = t;
                s->waiting = 1;
                oiov[k].iov_base = s->msg;
                oiov[k].iov_len = (size_t)s->len;
                memset(&outm[k].msg_hdr, 0, sizeof outm[k].msg_hdr);
                outm[k].msg_hdr.msg_iov = &oiov[k];
                outm[k].msg_hdr.msg_iovlen = 1;
            }
            int done = 0;
            while (done < npend) {
                int r = sendmmsg(fd, outm + done, (unsigned)(npend - done), 0);
                if (r < 0) {
                    if (errno == EINTR || errno == EAGAIN) continue;
                    done++; /* ECONNREFUSED: the gateway is gone; the timeout retransmits */
                    continue;
                }
                done += r;
            }
            in_flight += npend;
            npend = 0;
        }
        if (t >= stop_at && in_flight == 0) break;
        if (t >= stop_at + 2000000000ull) break; /* give up on stragglers */
        for (int i = 0; i < VLEN; i++) {
            iov[i].iov_base = in[i];
            iov[i].iov_len = MSG_MAX - 1;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, VLEN, MSG_DONTWAIT, NULL);
        t = now_ns();
        for (int m = 0; m < n; m++) {
            in[m][msgs[m].msg_len] = 0;
            unsigned code;
            uint64_t tid;
            if (sscanf(in[m], "%u %" SCNu64, &code, &tid) != 2 || tid < tid_base) continue;
            int i = (int)((tid - tid_base) % (uint64_t)nslots);
            struct slot *s = &slots[i];
            if (s->tid != tid || !s->waiting || code < 200) continue; /* duplicate or provisional */
            s->waiting = 0;
            in_flight--;
            completed++;
            uint64_t lat = (t - s->sent_ns) / 1000;
            if (t >= mstart && t < mend) {
                measured++;
                hist[lat < HIST_US ? lat : HIST_US - 1]++;
            }
            if (code >= 300) {
                errors++;
                if (errors <= 5) fprintf(stderr, "mgcpbench: error response: %.200s\n", in[m]);
                s->connid[0] = 0;
                s->op = OP_DLCX;
            } else if (s->op == OP_CRCX) {
                const char *p = strstr(in[m], "\nI:");
                s->connid[0] = 0;
                if (p) sscanf(p + 3, " %63[^\r\n ]", s->connid);
                s->op = OP_DLCX;
            } else {
                if (t >= mstart && t < mend) pairs++;
                s->op = OP_CRCX;
            }
            if (t < stop_at || s->op == OP_DLCX) {
                build(i);
                pending[npend++] = i;
            }
        }
        /* retransmit anything unanswered for 1 s (same transaction id) */
        if (n <= 0) {
            for (int i = 0; i < nslots; i++) {
                struct slot *s = &slots[i];
                if (s->waiting && t - s->sent_ns > 1000000000ull) {
                    int queued = 0;
                    for (int k = 0; k < npend; k++) queued |= pending[k] == i;
                    if (!queued) {
                        retrans++;
                        in_flight--; /* it is counted again when re-sent */
                        pending[npend++] = i;
                    }
                }
            }
        }
    }
    double p50 = 0, p99 = 0;
    uint64_t acc = 0;
    int got50 = 0;
    for (int i = 0; i < HIST_US && measured; i++) {
        acc += hist[i];
        if (!got50 && acc * 2 >= measured) {
            p50 = i;
            got50 = 1;
        }
        if (acc * 100 >= measured * 99) {
            p99 = i;
            break;
        }
    }
    printf("mgcp txn_per_s=%.0f pairs_per_s=%.0f completed=%" PRIu64 " errors=%" PRIu64
           " retransmits=%" PRIu64 " p50_us=%.0f p99_us=%.0f outstanding=%d\n",
           (double)measured / duration, (double)pairs / duration, completed, errors, retrans, p50, p99,
           nslots);
    return measured > 0 && errors == 0 ? 0 : 1;
}
