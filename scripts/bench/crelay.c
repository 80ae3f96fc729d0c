// crelay: the plainest UDP relay we could write, as a baseline for relay benchmarks.
// One thread, N port pairs on 127.0.0.1; what arrives on port A leaves port B towards
// B's destination and the other way round. epoll + recvmmsg/sendmmsg, batches of 64.
// No RTP parsing, no source check: this is the kernel's UDP path and nothing else.
//
// usage: crelay PAIRS_FILE      lines "PORT_A PORT_B DEST_A DEST_B" (ports on 127.0.0.1):
//                               rx on PORT_A -> tx from PORT_B to DEST_B,
//                               rx on PORT_B -> tx from PORT_A to DEST_A.
// Prints "crelay: ready N pairs" once every socket is bound; runs until SIGTERM/SIGINT.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define VLEN 64
#define MAX_SOCKS 8192
#define PKT_MAX 2048

struct side {
    int fd;
    int other;                 /* index of the paired socket */
    struct sockaddr_in dest;   /* where packets leaving this socket go */
};

static struct side sides[MAX_SOCKS];
static int nsides;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static int open_udp(unsigned port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void set_dest(struct sockaddr_in *d, unsigned port) {
    memset(d, 0, sizeof *d);
    d->sin_family = AF_INET;
    d->sin_port = htons((uint16_t)port);
    d->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: crelay PAIRS_FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    int ep = epoll_create1(0);
    if (ep < 0) {
        perror("epoll_create1");
        return 2;
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned pa, pb, da, db;
        if (sscanf(line, "%u %u %u %u", &pa, &pb, &da, &db) != 4) continue;
        if (nsides + 2 > MAX_SOCKS || pa > 65535 || pb > 65535 || da > 65535 || db > 65535) {
            fprintf(stderr, "crelay: bad or too many pairs at: %s", line);
            return 2;
        }
        int a = nsides++, b = nsides++;
        sides[a].fd = open_udp(pa);
        sides[b].fd = open_udp(pb);
        if (sides[a].fd < 0 || sides[b].fd < 0) {
            fprintf(stderr, "crelay: bind %u/%u: %s\n", pa, pb, strerror(errno));
            return 2;
        }
        sides[a].other = b;
        sides[b].other = a;
        set_dest(&sides[a].dest, da);
        set_dest(&sides[b].dest, db);
        for (int i = a; i <= b; i++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, sides[i].fd, &ev) < 0) {
                perror("epoll_ctl");
                return 2;
            }
        }
    }
    fclose(f);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("crelay: ready %d pairs\n", nsides / 2);
    fflush(stdout);

    static char bufs[VLEN][PKT_MAX];
    struct mmsghdr msgs[VLEN];
    struct iovec iov[VLEN];
    struct epoll_event evs[256];
    unsigned long long relayed = 0;
    while (!stop) {
        int ne = epoll_wait(ep, evs, 256, 200);
        if (ne < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 2;
        }
        for (int e = 0; e < ne; e++) {
            struct side *in = &sides[evs[e].data.u32];
            struct side *out = &sides[in->other];
            for (;;) {
                for (int i = 0; i < VLEN; i++) {
                    iov[i].iov_base = bufs[i];
                    iov[i].iov_len = PKT_MAX;
                    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                    msgs[i].msg_hdr.msg_iov = &iov[i];
                    msgs[i].msg_hdr.msg_iovlen = 1;
                }
                int n = recvmmsg(in->fd, msgs, VLEN, MSG_DONTWAIT, NULL);
                if (n <= 0) break;
                for (int i = 0; i < n; i++) {
                    iov[i].iov_len = msgs[i].msg_len;
                    msgs[i].msg_hdr.msg_name = &out->dest;
                    msgs[i].msg_hdr.msg_namelen = sizeof out->dest;
                }
                int done = 0;
                while (done < n) {
                    int r = sendmmsg(out->fd, msgs + done, (unsigned)(n - done), 0);
                    if (r < 0) {
                        if (errno == EINTR) continue;
                        done++; /* drop the packet the kernel refused (e.g. ECONNREFUSED) */
                        continue;
                    }
                    done += r;
                }
                relayed += (unsigned long long)n;
                if (n < VLEN) break;
            }
        }
    }
    fprintf(stderr, "crelay: relayed %llu packets\n", relayed);
    return 0;
}
