/* Does splice() pay for lb's tunnels? One relay process forwards a stream from one loopback TCP connection to
 * another, either through a user-space buffer (read + write, what lb/proxy.c does) or through a pipe with splice
 * (no copy into user space). A sender writes COUNT messages of SIZE bytes as fast as it can, a receiver drains
 * them; the relay's own CPU time (user + system, getrusage) per message and per GB is what we compare.
 * "stream" lets messages pile up (the relay moves up to 64 KiB per call: bulk transfer); "paced" has the sender
 * wait until the receiver got each message before sending the next (one message per call: a chat or a broadcast
 * tunnel, where messages come one at a time).
 *
 * usage: tunnel-copy SIZE COUNT stream|paced     prints one line per method */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* A connected pair of loopback TCP sockets. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0)
        die("listen");
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fds[0], (struct sockaddr *)&a, sizeof a) < 0 || (fds[1] = accept(l, NULL, NULL)) < 0)
        die("connect");
    setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close(l);
}

static double cpu_seconds(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static void relay_copy(int in, int out, size_t total)
{
    static char buf[65536];
    while (total) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n <= 0)
            die("read");
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w <= 0)
                die("write");
            off += w;
        }
        total -= (size_t)n;
    }
}

static void relay_splice(int in, int out, size_t total)
{
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    while (total) {
        ssize_t n = splice(in, NULL, p[1], NULL, 65536, SPLICE_F_MOVE);
        if (n <= 0)
            die("splice in");
        for (ssize_t left = n; left > 0;) {
            ssize_t w = splice(p[0], NULL, out, NULL, (size_t)left, SPLICE_F_MOVE);
            if (w <= 0)
                die("splice out");
            left -= w;
        }
        total -= (size_t)n;
    }
    close(p[0]);
    close(p[1]);
}

static int paced;

static void run(const char *name, size_t size, long count, void (*relay)(int, int, size_t))
{
    int a[2], b[2], ack[2];
    if (pipe(ack) < 0)
        die("pipe");
    tcp_pair(a); /* sender a[0] -> relay a[1] */
    tcp_pair(b); /* relay b[0] -> receiver b[1] */
    pid_t snd = fork();
    if (snd == 0) {
        char *msg = calloc(1, size);
        for (long i = 0; i < count; i++) {
            for (size_t off = 0; off < size;) {
                ssize_t w = write(a[0], msg + off, size - off);
                if (w <= 0)
                    _exit(1);
                off += (size_t)w;
            }
            if (paced && read(ack[0], msg, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    pid_t rcv = fork();
    if (rcv == 0) {
        static char sink[65536];
        size_t got = 0;
        for (size_t left = size * (size_t)count; left;) {
            ssize_t n = read(b[1], sink, sizeof sink);
            if (n <= 0)
                _exit(1);
            left -= (size_t)n;
            got += (size_t)n;
            for (; paced && got >= size; got -= size)
                if (write(ack[1], "k", 1) != 1)
                    _exit(1);
        }
        _exit(0);
    }
    double t0 = cpu_seconds();
    relay(a[1], b[0], size * (size_t)count);
    double cpu = cpu_seconds() - t0;
    waitpid(snd, NULL, 0);
    waitpid(rcv, NULL, 0);
    double mb = (double)size * (double)count / 1e6;
    printf("%-6s %-6s size %6zu  relay CPU %.3f s  %6.2f us/message  %6.2f s/GB\n", paced ? "paced" : "stream", name,
           size, cpu, cpu / (double)count * 1e6, cpu / mb * 1e3);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]), close(ack[0]), close(ack[1]);
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "stream") != 0 && strcmp(argv[3], "paced") != 0))
        return fprintf(stderr, "usage: tunnel-copy SIZE COUNT stream|paced\n"), 2;
    paced = strcmp(argv[3], "paced") == 0;
    size_t size = strtoul(argv[1], NULL, 10);
    long count = strtol(argv[2], NULL, 10);
    if (size == 0 || size > (1 << 20) || count <= 0)
        return fprintf(stderr, "tunnel-copy: SIZE 1..1048576, COUNT > 0\n"), 2;
    run("copy", size, count, relay_copy);
    run("splice", size, count, relay_splice);
    return 0;
}
