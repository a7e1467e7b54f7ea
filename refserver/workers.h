/* refserver --workers N: N processes serving one port, each its own participant on the Redis bus, as a Node.js
 * Socket.IO node runs with the cluster module and @socket.io/sticky; docs in README.md ("Workers").
 *
 * The master binds N SO_REUSEPORT listeners (one per worker, so the kernel spreads connections and each worker has
 * its own open-files limit) and N AF_UNIX SOCK_SEQPACKET pairs, forks the workers, restarts one that dies, forwards
 * SIGTERM/SIGINT and exits once all have exited. It serves no traffic and holds no event loop.
 *
 * Engine.IO long-polling needs every request of a session on the worker that holds it, but the kernel picks a
 * worker when the SYN arrives, before any byte of the request is known. So a worker puts its index in the first
 * character of each sid it makes, and a worker that reads a request head naming another worker's sid hands the
 * connection over: the descriptor (SCM_RIGHTS) and the bytes read so far, in one record on the owner's pair; the
 * owner goes on as if it had read them itself. Unlike @socket.io/sticky, whose master accepts every connection and
 * reads its first request to pick a worker, our master stays off the data path (its descriptors and core would cap the
 * node again), and only a connection that met the wrong worker pays a hand-over; a reuseport BPF program cannot help,
 * as it runs at the SYN. */
#ifndef REFSERVER_WORKERS_H
#define REFSERVER_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORKERS_MAX        64    /* one base64url character names a worker */
#define WORKERS_MSG_MAX    65536 /* bytes handed over with a connection: at most one read (server.c's scratch) */
#define WORKERS_MSG_HEADER 8     /* "WH", a version, a reserved byte, the byte count (u32, little-endian) */
#define WORKERS_STAT_WORDS 64    /* metric values each worker publishes for the others' /metrics */

struct ev_loop;
struct server_config;
struct workers;

/* Serve as one worker with cfg (its bus_id and max_clients share set) until stopped; returns the exit code. */
typedef int workers_serve_fn(const struct server_config *cfg, struct workers *w);
/* A connection handed to this worker: its descriptor (now the callee's) and the bytes another worker read from it. */
typedef void workers_adopt_fn(void *ctx, int fd, const char *bytes, size_t len);

/* The master: bind, fork cfg->workers workers running serve (logging at log_level, as "refserver NODE.wI"),
 * supervise them. Returns the process's exit code: 0 after SIGTERM/SIGINT, 2 when the address cannot be bound or a
 * worker cannot start (said on stderr). */
int workers_run(const struct server_config *cfg, int log_level, workers_serve_fn *serve);

/* In a worker: take handed-over connections on loop (adopt gets them) and unblock the signals the master blocked
 * before forking; call once the worker's signal watchers are in place. */
void workers_start(struct workers *w, struct ev_loop *loop, workers_adopt_fn *adopt, void *ctx);
/* Shutting down: connections handed to us from now on are closed unread. */
void workers_stop_adopting(struct workers *w);
/* Release the worker's view (its sockets, connections still waiting to be handed over) after the loop ended. */
void workers_free(struct workers *w);

uint32_t workers_index(const struct workers *w);
uint32_t workers_count(const struct workers *w);
/* The listening socket the master bound for this worker. */
int workers_listen_fd(const struct workers *w);

/* Give connection fd, with the bytes already read from it (at most WORKERS_MSG_MAX), to worker `to`: sent now, or
 * queued while the owner's socket is full. The descriptor is ours no more, whatever happens; -1 when it had to be
 * closed instead (too many bytes, too many waiting, out of memory, a broken socket). */
int workers_hand_over(struct workers *w, uint32_t to, int fd, const char *bytes, size_t len);

/* Metrics across workers: publish this worker's values (n <= WORKERS_STAT_WORDS), read worker i's last ones. */
void workers_publish(struct workers *w, const uint64_t *v, size_t n);
void workers_read(const struct workers *w, uint32_t i, uint64_t *v, size_t n);

/* ---- pure parts, for tests ---- */

/* Make the id (EIO_ID_LEN base64url characters) name worker index: its first character becomes index's. */
void workers_sid_mark(char *id, uint32_t index);
/* The worker of n that a sid names, or -1 when it names none: a malformed sid (not 20 base64url characters), or
 * one whose first character is beyond the workers that exist. */
int workers_sid_owner(const char *sid, size_t len, uint32_t n);
/* The node id's name on the bus for worker index ("n1" -> "n1.w2") into out (outlen bytes). */
void workers_bus_id(char *out, size_t outlen, const char *node_id, uint32_t index);
/* A hand-over record's header for len bytes into out (WORKERS_MSG_HEADER bytes). */
void workers_msg_header(uint8_t *out, size_t len);
/* A received record rec[0..reclen): 0 with the bytes' span, or -1 when it is not a whole hand-over record. */
int workers_msg_parse(const uint8_t *rec, size_t reclen, const uint8_t **bytes, size_t *len);

#endif
