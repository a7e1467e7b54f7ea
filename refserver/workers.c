/* refserver --workers N: the master, and a worker's hand-over sockets and metric slot; see workers.h. */
#define _GNU_SOURCE
#include "refserver/workers.h"

#include "common/bus.h"
#include "common/log.h"
#include "common/net.h"
#include "common/eio.h"
#include "refserver/server.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE   2
#define BACKLOG      4096
#define RECV_BATCH   64           /* records taken per wake-up, so one busy sender cannot starve the loop */
#define WAITING_MAX  4096         /* connections a worker holds while their owner's socket is full */
#define CHAN_SNDBUF  (1 << 20)    /* room for bursts of records (the kernel caps it at net.core.wmem_max) */
#define RESTART_SPAN 1000000000LL /* a worker that dies sooner after its start waits this long to start again */
#define SEC          1000000000LL

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- pure parts ---- */

void workers_sid_mark(char *id, uint32_t index)
{
    id[0] = b64url[index % WORKERS_MAX];
}

int workers_sid_owner(const char *sid, size_t len, uint32_t n)
{
    if (len != EIO_ID_LEN)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!sid[i] || !strchr(b64url, sid[i]))
            return -1;
    int index = (int)(strchr(b64url, sid[0]) - b64url);
    return (uint32_t)index < n ? index : -1;
}

void workers_bus_id(char *out, size_t outlen, const char *node_id, uint32_t index)
{
    snprintf(out, outlen, "%s.w%u", node_id, index);
}

void workers_msg_header(uint8_t *out, size_t len)
{
    out[0] = 'W', out[1] = 'H', out[2] = 1, out[3] = 0;
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t)(len >> (8 * i));
}

int workers_msg_parse(const uint8_t *rec, size_t reclen, const uint8_t **bytes, size_t *len)
{
    if (reclen < WORKERS_MSG_HEADER || rec[0] != 'W' || rec[1] != 'H' || rec[2] != 1)
        return -1;
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n |= (size_t)rec[4 + i] << (8 * i);
    if (n == 0 || n > WORKERS_MSG_MAX || n != reclen - WORKERS_MSG_HEADER)
        return -1;
    *bytes = rec + WORKERS_MSG_HEADER;
    *len = n;
    return 0;
}

/* ---- a worker's view ---- */

/* A connection waiting for room on its owner's socket: the record as it will be sent. */
struct waiting {
    struct waiting *next;
    int fd;
    size_t len;
    uint8_t rec[];
};

struct workers {
    uint32_t index, n;
    int lfd, in_fd;          /* our listener; our end of our pair (records for us arrive here) */
    int out_fd[WORKERS_MAX]; /* the other workers' pairs, the end we send on; -1 for our own */
    uint64_t *shared;        /* n slots of WORKERS_STAT_WORDS, MAP_SHARED by the master */
    size_t shared_len;
    struct ev_loop *loop;
    workers_adopt_fn *adopt;
    void *ctx;
    bool stopping;
    ev_io rio;
    ev_io wio[WORKERS_MAX]; /* a full pair's socket, watched for room while connections wait for it */
    struct waiting *head[WORKERS_MAX], *tail[WORKERS_MAX];
    uint32_t nwaiting;
    uint8_t *rbuf; /* one received record */
};

uint32_t workers_index(const struct workers *w)
{
    return w->index;
}

uint32_t workers_count(const struct workers *w)
{
    return w->n;
}

int workers_listen_fd(const struct workers *w)
{
    return w->lfd;
}

/* One record (header, then bytes) with fd attached. The byte count sent, or -1 with errno. */
static ssize_t send_record(int sock, int fd, const uint8_t *head, size_t head_len, const void *bytes, size_t len)
{
    struct iovec iov[2] = {{.iov_base = (void *)(uintptr_t)head, .iov_len = head_len},
                           {.iov_base = (void *)(uintptr_t)bytes, .iov_len = len}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {
        .msg_iov = iov, .msg_iovlen = len ? 2 : 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    return sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void on_room(struct ev_loop *loop, ev_io *io, int revents);

/* Keep the connection until worker to's socket has room (its record copied). 0, or -1 when it cannot wait. */
static int wait_for_room(struct workers *w, uint32_t to, int fd, const uint8_t *head, const char *bytes, size_t len)
{
    struct waiting *q = w->nwaiting < WAITING_MAX ? malloc(sizeof *q + WORKERS_MSG_HEADER + len) : NULL;
    if (!q)
        return -1;
    q->next = NULL;
    q->fd = fd;
    q->len = WORKERS_MSG_HEADER + len;
    memcpy(q->rec, head, WORKERS_MSG_HEADER);
    memcpy(q->rec + WORKERS_MSG_HEADER, bytes, len);
    if (w->tail[to])
        w->tail[to]->next = q;
    else
        w->head[to] = q;
    w->tail[to] = q;
    w->nwaiting++;
    if (!ev_is_active(&w->wio[to])) {
        ev_io_init(&w->wio[to], on_room, w->out_fd[to], EV_WRITE);
        ev_io_start(w->loop, &w->wio[to]);
    }
    return 0;
}

int workers_hand_over(struct workers *w, uint32_t to, int fd, const char *bytes, size_t len)
{
    uint8_t head[WORKERS_MSG_HEADER];
    if (to >= w->n || to == w->index || len > WORKERS_MSG_MAX) {
        close(fd);
        return -1;
    }
    workers_msg_header(head, len);
    if (!w->head[to]) { /* nothing waits for this worker: send now */
        ssize_t n = send_record(w->out_fd[to], fd, head, sizeof head, bytes, len);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)) {
            if (n < 0)
                LOG_WARN("handing a connection to worker %u: %s", to, strerror(errno));
            close(fd); /* sent: the owner has its own copy of the descriptor */
            return n < 0 ? -1 : 0;
        }
    }
    if (wait_for_room(w, to, fd, head, bytes, len) < 0) {
        close(fd);
        return -1;
    }
    return 0;
}

/* Worker i's socket has room: send what waits for it, in order. */
static void on_room(struct ev_loop *loop, ev_io *io, int revents)
{
    struct workers *w = (struct workers *)io->data;
    uint32_t to = (uint32_t)(io - w->wio);
    (void)revents;
    while (w->head[to]) {
        struct waiting *q = w->head[to];
        ssize_t n = send_record(w->out_fd[to], q->fd, q->rec, q->len, NULL, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            return;
        if (n < 0)
            LOG_WARN("handing a connection to worker %u: %s", to, strerror(errno));
        close(q->fd);
        w->head[to] = q->next;
        if (!w->head[to])
            w->tail[to] = NULL;
        w->nwaiting--;
        free(q);
    }
    ev_io_stop(loop, io);
}

/* One record from our socket into w->rbuf; *fd gets the descriptor it carried (-1: none). Its length, 0 at the
 * end of the stream, -1 with errno; -2 for a record cut short (too long, or more descriptors than one). */
static ssize_t recv_record(struct workers *w, int *fd)
{
    struct iovec iov = {.iov_base = w->rbuf, .iov_len = WORKERS_MSG_HEADER + WORKERS_MSG_MAX};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    *fd = -1;
    ssize_t n = recvmsg(w->in_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds; i++) {
            int got;
            memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
            if (*fd < 0)
                *fd = got;
            else
                close(got); /* never sent by a worker: not ours to keep */
        }
    }
    return msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC) ? -2 : n;
}

/* Records on our socket: each is a connection for adopt, or, when malformed or while we stop, closed. */
static void on_handed(struct ev_loop *loop, ev_io *io, int revents)
{
    struct workers *w = container_of(io, struct workers, rio);
    (void)revents;
    for (int i = 0; i < RECV_BATCH; i++) {
        int fd;
        const uint8_t *bytes;
        size_t len;
        ssize_t n = recv_record(w, &fd);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n == 0 || n == -1) { /* the pair is gone (never while the master lives): stop watching it */
            LOG_ERR("hand-over socket: %s", n ? strerror(errno) : "closed");
            ev_io_stop(loop, io);
            return;
        }
        if (fd < 0 || n < 0 || workers_msg_parse(w->rbuf, (size_t)n, &bytes, &len) < 0 || w->stopping) {
            if (!w->stopping)
                LOG_WARN("dropped a malformed hand-over record (%zd bytes)", n);
            if (fd >= 0)
                close(fd);
            continue;
        }
        w->adopt(w->ctx, fd, (const char *)bytes, len);
    }
}

void workers_start(struct workers *w, struct ev_loop *loop, workers_adopt_fn *adopt, void *ctx)
{
    w->loop = loop;
    w->adopt = adopt;
    w->ctx = ctx;
    for (uint32_t i = 0; i < WORKERS_MAX; i++)
        w->wio[i].data = w;
    ev_io_init(&w->rio, on_handed, w->in_fd, EV_READ);
    ev_io_start(loop, &w->rio);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void workers_stop_adopting(struct workers *w)
{
    w->stopping = true;
}

void workers_free(struct workers *w)
{
    if (!w)
        return;
    for (uint32_t to = 0; to < w->n; to++) {
        while (w->head[to]) {
            struct waiting *q = w->head[to];
            w->head[to] = q->next;
            close(q->fd);
            free(q);
        }
        if (w->loop)
            ev_io_stop(w->loop, &w->wio[to]);
        if (w->out_fd[to] >= 0)
            close(w->out_fd[to]);
    }
    if (w->loop)
        ev_io_stop(w->loop, &w->rio);
    close(w->in_fd);
    close(w->lfd);
    munmap(w->shared, w->shared_len);
    free(w->rbuf);
    free(w);
}

void workers_publish(struct workers *w, const uint64_t *v, size_t n)
{
    uint64_t *slot = w->shared + (size_t)w->index * WORKERS_STAT_WORDS;
    for (size_t i = 0; i < n && i < WORKERS_STAT_WORDS; i++)
        __atomic_store_n(&slot[i], v[i], __ATOMIC_RELAXED);
}

void workers_read(const struct workers *w, uint32_t i, uint64_t *v, size_t n)
{
    const uint64_t *slot = w->shared + (size_t)i * WORKERS_STAT_WORDS;
    for (size_t k = 0; k < n && k < WORKERS_STAT_WORDS; k++)
        v[k] = __atomic_load_n(&slot[k], __ATOMIC_RELAXED);
}

/* ---- the master ---- */

struct master {
    const struct server_config *cfg;
    workers_serve_fn *serve;
    int log_level;
    pid_t master;
    uint32_t n;
    int lfd[WORKERS_MAX];
    int chan[WORKERS_MAX][2]; /* [0]: the end every other worker sends on, [1]: worker i's end */
    uint64_t *shared;
    size_t shared_len;
    pid_t pid[WORKERS_MAX];
    int64_t started[WORKERS_MAX], restart_at[WORKERS_MAX]; /* CLOCK_MONOTONIC ns; restart_at 0: none due */
    bool stopping;
    int rc;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* The Redis URL (and CA file) as a worker's bus will take them, so a bad one is said once, before any fork. */
static int check_redis(const struct server_config *cfg, char *err, size_t errlen)
{
    if (!cfg->redis_url)
        return 0;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    struct bus_options o = {.url = cfg->redis_url, .ca_file = cfg->redis_ca, .tls_insecure = cfg->redis_insecure};
    struct bus *b = bus_new(loop, &o, err, errlen); /* connects only once its loop runs: never here */
    bus_free(b);
    ev_loop_destroy(loop);
    return b ? 0 : -1;
}

/* Every worker's listener on one address (a port 0 becomes the first one's, for all), their pairs, the shared
 * metric slots. 0, or -1 with err. */
static int prepare(struct master *m, char *err, size_t errlen)
{
    struct net_addr addr = m->cfg->listen;
    int sndbuf = CHAN_SNDBUF;
    for (uint32_t i = 0; i < m->n; i++) {
        if ((m->lfd[i] = net_listen(&addr, BACKLOG, true, err, errlen)) < 0)
            return -1;
        addr.len = sizeof addr.ss;
        if (i == 0 && getsockname(m->lfd[0], (struct sockaddr *)&addr.ss, &addr.len) < 0)
            addr = m->cfg->listen;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, m->chan[i]) < 0) {
            snprintf(err, errlen, "socketpair: %s", strerror(errno));
            return -1;
        }
        setsockopt(m->chan[i][0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    m->shared_len = (size_t)m->n * WORKERS_STAT_WORDS * sizeof(uint64_t);
    m->shared = mmap(NULL, m->shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->shared == MAP_FAILED) {
        m->shared = NULL;
        snprintf(err, errlen, "mmap of the shared metrics: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void release(struct master *m)
{
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->lfd[i] >= 0)
            close(m->lfd[i]);
        for (int k = 0; k < 2; k++)
            if (m->chan[i][k] >= 0)
                close(m->chan[i][k]);
    }
    if (m->shared)
        munmap(m->shared, m->shared_len);
}

/* In the child: keep worker index's listener and receiving end and the others' sending ends, nothing else. */
static struct workers *worker_view(struct master *m, uint32_t index)
{
    struct workers *w = calloc(1, sizeof *w);
    uint8_t *rbuf = malloc(WORKERS_MSG_HEADER + WORKERS_MSG_MAX);
    if (!w || !rbuf) {
        free(w);
        free(rbuf);
        return NULL;
    }
    *w = (struct workers){.index = index,
                          .n = m->n,
                          .lfd = m->lfd[index],
                          .in_fd = m->chan[index][1],
                          .shared = m->shared,
                          .shared_len = m->shared_len,
                          .rbuf = rbuf};
    for (uint32_t i = 0; i < m->n; i++) {
        w->out_fd[i] = i == index ? -1 : m->chan[i][0];
        if (i != index)
            close(m->lfd[i]), close(m->chan[i][1]);
    }
    close(m->chan[index][0]);
    return w;
}

static int worker_main(struct master *m, uint32_t index)
{
    struct server_config cfg = *m->cfg;
    char name[NODE_ID_MAX + 32];
    /* A master killed outright takes its workers with it at once: a crashed node must look crashed (connections
     * reset, the port refusing), not half alive with workers closing politely over the grace time. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != m->master)
        return 0; /* the master died before we could ask to follow it */
    workers_bus_id(cfg.bus_id, sizeof cfg.bus_id, cfg.node_id, index);
    if (cfg.max_clients)
        cfg.max_clients = (cfg.max_clients + m->n - 1) / m->n;
    snprintf(name, sizeof name, "refserver %s", cfg.bus_id);
    log_init(name, (enum log_level)m->log_level);
    struct workers *w = worker_view(m, index);
    if (!w) {
        LOG_ERR("out of memory");
        return EXIT_USAGE;
    }
    int rc = m->serve(&cfg, w);
    workers_free(w);
    return rc;
}

static void spawn(struct master *m, uint32_t index)
{
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid == 0)
        exit(worker_main(m, index)); /* exit, not _exit: the sanitizers' leak check runs in workers too */
    m->restart_at[index] = 0;
    m->started[index] = now_ns();
    m->pid[index] = pid;
    if (pid < 0) {
        LOG_ERR("fork: %s; trying again in a second", strerror(errno));
        m->pid[index] = 0;
        m->restart_at[index] = m->started[index] + RESTART_SPAN;
        return;
    }
    LOG_INFO("worker %u started, pid %d", index, (int)pid);
}

static void signal_all(const struct master *m, int sig)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (m->pid[i] > 0)
            kill(m->pid[i], sig);
}

static void stop(struct master *m, int sig)
{
    int kill_sig = m->stopping ? SIGKILL : SIGTERM; /* a second signal: stop now */
    if (sig)
        LOG_INFO("signal %d: stopping the workers", sig);
    m->stopping = true;
    for (uint32_t i = 0; i < m->n; i++)
        m->restart_at[i] = 0;
    signal_all(m, kill_sig);
}

/* A worker ended: while stopping, how; exit code 2, a worker that could not start, stops the node; otherwise it
 * starts again (after RESTART_SPAN when it died that soon after its start). */
static void worker_ended(struct master *m, uint32_t i, int status)
{
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const char *how = WIFSIGNALED(status) ? "signal" : "exit";
    int code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
    m->pid[i] = 0;
    if (m->stopping) {
        if (!clean && m->rc == 0)
            m->rc = 1;
        if (!clean)
            LOG_WARN("worker %u ended with %s %d", i, how, code);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_USAGE) {
        LOG_ERR("worker %u could not start; stopping", i);
        m->rc = EXIT_USAGE;
        stop(m, 0);
        return;
    }
    int64_t now = now_ns();
    m->restart_at[i] = now - m->started[i] < RESTART_SPAN ? m->started[i] + RESTART_SPAN : now;
    LOG_WARN("worker %u died (%s %d); starting it again", i, how, code);
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (uint32_t i = 0; i < m->n; i++)
            if (m->pid[i] == pid)
                worker_ended(m, i, status);
}

/* Start the workers whose restart is due; the next time one is due (0: none). */
static int64_t restart_due(struct master *m)
{
    int64_t next = 0, now = now_ns();
    for (uint32_t i = 0; i < m->n; i++) {
        if (!m->restart_at[i])
            continue;
        if (m->restart_at[i] <= now)
            spawn(m, i);
        if (m->restart_at[i] && (!next || m->restart_at[i] < next))
            next = m->restart_at[i];
    }
    return next;
}

static bool any_alive(const struct master *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (m->pid[i] > 0)
            return true;
    return false;
}

static int master_loop(struct master *m, const sigset_t *set)
{
    for (;;) {
        int64_t next = restart_due(m);
        if (m->stopping && !any_alive(m))
            return m->rc;
        int sig;
        if (next) {
            int64_t left = next - now_ns();
            struct timespec ts = {.tv_sec = left > 0 ? (time_t)(left / SEC) : 0,
                                  .tv_nsec = left > 0 ? (long)(left % SEC) : 0};
            sig = sigtimedwait(set, NULL, &ts);
        } else {
            sig = sigwaitinfo(set, NULL);
        }
        if (sig == SIGCHLD)
            reap(m);
        else if (sig == SIGTERM || sig == SIGINT)
            stop(m, sig);
    }
}

int workers_run(const struct server_config *cfg, int log_level, workers_serve_fn *serve)
{
    struct master m = {.cfg = cfg, .serve = serve, .log_level = log_level, .master = getpid(), .n = cfg->workers};
    char err[ERR_LEN], where[80];
    memset(m.lfd, -1, sizeof m.lfd);
    memset(m.chan, -1, sizeof m.chan);
    if (m.n < 2 || m.n > WORKERS_MAX || prepare(&m, err, sizeof err) < 0 || check_redis(cfg, err, sizeof err) < 0) {
        if (m.n < 2 || m.n > WORKERS_MAX)
            snprintf(err, sizeof err, "--workers must be 1 to %d", WORKERS_MAX);
        fprintf(stderr, "refserver: %s\n", err);
        release(&m);
        return EXIT_USAGE;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL); /* before any fork: a worker unblocks them once its watchers are up */
    signal(SIGPIPE, SIG_IGN);
    struct net_addr bound = {.len = sizeof bound.ss};
    getsockname(m.lfd[0], (struct sockaddr *)&bound.ss, &bound.len);
    net_addr_str(&bound, where, sizeof where);
    LOG_INFO("listening on %s with %u workers, redis %s", where, m.n, cfg->redis_url ? "on" : "off (standalone)");
    for (uint32_t i = 0; i < m.n; i++)
        spawn(&m, i);
    int rc = master_loop(&m, &set);
    release(&m);
    LOG_INFO("stopped");
    return rc;
}
