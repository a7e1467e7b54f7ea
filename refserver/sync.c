/* Cross-node delivery over Redis, the heartbeat and the accounting of short publishes; see sync.h. */
#include "refserver/sync.h"

#include "common/buf.h"
#include "common/bus.h"
#include "common/log.h"
#include "common/ws.h"
#include "refserver/room.h"
#include "refserver/wire.h"

#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHANNEL_MAX (64 + 1 + ROOM_NAME_MAX)
#define NAME_KEEP   48 /* bytes of a channel name kept with each unanswered publish, for the log */

enum expect_kind { EXPECT_NONE = 0, EXPECT_ROOM, EXPECT_SIO };

/* A PUBLISH awaiting its answer: whom it should reach (the other participants, and whether our own subscription
 * counts in Redis' answer). Replies come in the order the publishes went. */
struct expect {
    uint64_t room;
    uint32_t others;
    uint8_t kind, nsp;
    bool self;
    char name[NAME_KEEP + 1];
};

/* A closed room's channel, unsubscribed once due. */
struct linger {
    struct linger *next;
    double due;
    size_t len;
    char name[];
};

struct sync {
    struct bus *bus;
    struct ev_loop *loop;
    struct sync_config cfg;
    size_t prefix_len, node_len, sio_key_len;
    struct buf out; /* header + payload of the message being published, reused */
    struct peers peers;
    char hb_channel[80];
    size_t hb_len;
    char *sio_patterns[PEERS_NSP_MAX]; /* KEY#NSP#* per namespace: our own subscription to a broadcast */
    uint64_t hb_rooms[PEERS_ROOMS_MAX + 1];
    ev_timer tick;
    bool leaving;
    /* the bus clock: seconds connected (peers.h), and when the current connected span began (0: down) */
    double up_base, up_at;
    /* unanswered publishes: a ring of cap entries, head the oldest */
    struct expect *ring;
    size_t ring_cap, ring_head, ring_len;
    bool ring_lost; /* out of memory once: no judging until the link is lost and starts afresh */
    struct linger *linger_head, *linger_tail;
    /* the outage: when it began (0: up), publish failures then, when it was last said */
    double down_at, down_said;
    uint64_t failed_at_down;
    bool ever_up;
    /* short publishes: totals, and those not yet said */
    uint64_t short_total, short_missing, unsaid, unsaid_missing;
    double short_said;
    char last_short[NAME_KEEP + 1];
    uint32_t alive_said;
};

static double bus_clock(const struct sync *s)
{
    return s->up_base + (s->up_at > 0 ? ev_now(s->loop) - s->up_at : 0);
}

static size_t channel_name(const struct sync *s, const char *room, size_t room_len, char *out)
{
    memcpy(out, s->cfg.prefix, s->prefix_len);
    out[s->prefix_len] = '#';
    memcpy(out + s->prefix_len + 1, room, room_len);
    return s->prefix_len + 1 + room_len;
}

/* ---- unanswered publishes ---- */

static int ring_push(struct sync *s, const struct expect *e)
{
    if (s->ring_len == s->ring_cap) {
        size_t cap = s->ring_cap ? s->ring_cap * 2 : 64;
        struct expect *r = malloc(cap * sizeof *r);
        if (!r)
            return -1;
        for (size_t i = 0; i < s->ring_len; i++)
            r[i] = s->ring[(s->ring_head + i) % s->ring_cap];
        free(s->ring);
        s->ring = r;
        s->ring_cap = cap;
        s->ring_head = 0;
    }
    s->ring[(s->ring_head + s->ring_len++) % s->ring_cap] = *e;
    return 0;
}

static bool ring_pop(struct sync *s, struct expect *e)
{
    if (!s->ring_len)
        return false;
    *e = s->ring[s->ring_head];
    s->ring_head = (s->ring_head + 1) % s->ring_cap;
    s->ring_len--;
    return true;
}

/* A publish reached `got` of the e->others participants that should hold its channel: counted always; said at once
 * when nothing was said for SYNC_LOG_EVERY, else summed into the next tick's line. */
static void note_short(struct sync *s, const struct expect *e, long long got)
{
    uint64_t missing = e->others - (uint64_t)got;
    double now = ev_now(s->loop);
    s->short_total++;
    s->short_missing += missing;
    snprintf(s->last_short, sizeof s->last_short, "%s", e->name);
    if (s->unsaid || (s->short_said > 0 && now - s->short_said < SYNC_LOG_EVERY)) {
        s->unsaid++;
        s->unsaid_missing += missing;
        return;
    }
    char names[256];
    struct peers_target t = {.sio = e->kind == EXPECT_SIO, .room = e->room, .nsp = e->nsp};
    peers_expect(&s->peers, &t, bus_clock(s), names, sizeof names);
    LOG_WARN("publish to %s reached %lld of the %" PRIu32 " other participant(s) that hold it (now: %s); counted in "
             "refserver_publish_short_total, further ones summed every %.0f s",
             e->name, got, e->others, names[0] ? names : "none alive", SYNC_LOG_EVERY);
    s->short_said = now;
}

/* Redis' answer to our oldest unanswered PUBLISH. Our own subscription, when we hold the channel, is one of the
 * receivers; subscribers that are not participants (redis-cli, Node.js nodes) may hide a missing one. */
static void on_published(void *ctx, long long receivers)
{
    struct sync *s = ctx;
    struct expect e;
    if (s->ring_lost || !ring_pop(s, &e) || e.kind == EXPECT_NONE || receivers < 0)
        return;
    long long others = receivers - (e.self ? 1 : 0);
    if (others < (long long)e.others)
        note_short(s, &e, others < 0 ? 0 : others);
}

/* Queue a PUBLISH judged by e (its name filled in here). */
static void publish(struct sync *s, const char *channel, size_t channel_len, const char *data, size_t len,
                    struct expect *e)
{
    size_t keep = channel_len < NAME_KEEP ? channel_len : NAME_KEEP;
    memcpy(e->name, channel, keep);
    e->name[keep] = '\0';
    if (bus_publish(s->bus, channel, channel_len, data, len) < 0 || s->ring_lost)
        return;
    if (ring_push(s, e) < 0) {
        /* the answers would no longer match their publishes: judge none until the link starts afresh */
        LOG_ERR("out of memory tracking publishes; short publishes are not counted until the next reconnect");
        s->ring_lost = true;
    }
}

/* ---- the heartbeat ---- */

static void heartbeat(struct sync *s)
{
    char ch[CHANNEL_MAX];
    size_t n = 0;
    for (const struct room *r = room_next(s->cfg.rooms, NULL); r && n <= PEERS_ROOMS_MAX;
         r = room_next(s->cfg.rooms, r))
        if (bus_confirmed(s->bus, false, ch, channel_name(s, r->name, r->name_len, ch)))
            s->hb_rooms[n++] = peers_hash(r->name, r->name_len);
    s->out.rpos = s->out.wpos = 0;
    if (peers_encode(&s->out, &s->peers, (uint32_t)getpid(), s->hb_rooms, n) < 0)
        return;
    struct expect e = {.kind = EXPECT_NONE};
    publish(s, s->hb_channel, s->hb_len, buf_head(&s->out), buf_len(&s->out), &e);
}

static void on_heartbeat(struct sync *s, const char *data, size_t len)
{
    struct wire_hb hb;
    int rc = peers_on_message(&s->peers, data, len, bus_clock(s));
    if (rc < 0)
        LOG_DEBUG("ignored a malformed message on %s (%zu bytes)", s->hb_channel, len);
    else if (rc > 0 && wire_hb_parse(data, len, &hb) == 0)
        LOG_INFO("bus: heard participant %.*s; %" PRIu32 " other(s) alive", (int)hb.id_len, hb.id,
                 peers_alive(&s->peers, bus_clock(s)));
}

static void on_bus_message(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len)
{
    struct sync *s = ctx;
    const char *node, *payload;
    size_t node_len, payload_len;
    uint8_t opcode;
    if (channel_len == s->hb_len && !memcmp(channel, s->hb_channel, s->hb_len)) {
        on_heartbeat(s, data, len);
        return;
    }
    if (s->sio_key_len && channel_len > s->sio_key_len && !memcmp(channel, s->cfg.sio_key, s->sio_key_len) &&
        (channel[s->sio_key_len] == '#' || channel[s->sio_key_len] == '-')) { /* KEY#NSP#..., KEY-request#NSP# */
        s->cfg.sio_deliver(s->cfg.ctx, channel, channel_len, data, len);
        return;
    }
    if (channel_len <= s->prefix_len + 1 ||
        wire_room_parse(data, len, &node, &node_len, &opcode, &payload, &payload_len))
        return;
    /* Our own publication: its local delivery happened when the client sent it. */
    if (node_len == s->node_len && !memcmp(node, s->cfg.node_id, node_len))
        return;
    struct room *room = room_find(s->cfg.rooms, channel + s->prefix_len + 1, channel_len - s->prefix_len - 1);
    if (room)
        s->cfg.deliver(s->cfg.ctx, room, opcode, payload, payload_len);
}

/* ---- up, down, and the periodic work ---- */

static uint64_t failed(const struct sync *s)
{
    return bus_get_stats(s->bus)->publish_failed;
}

/* The bus came up (say what the outage cost, heartbeat at once so the others expect us again) or went down (the
 * unanswered publishes are gone with the link; the bus clock stops). */
static void on_link(void *ctx, bool up)
{
    struct sync *s = ctx;
    double now = ev_now(s->loop);
    if (!up) {
        s->up_base += now - s->up_at;
        s->up_at = 0;
        s->ring_len = s->ring_head = 0;
        s->ring_lost = false;
        s->failed_at_down = failed(s);
        s->down_at = s->down_said = now;
        return;
    }
    s->up_at = now;
    if (s->ever_up)
        LOG_INFO("redis %s: back after %.1f s down; %" PRIu64 " message(s) were not published to other nodes",
                 bus_describe(s->bus), now - s->down_at, failed(s) - s->failed_at_down);
    s->ever_up = true;
    s->down_at = 0;
    if (!s->leaving)
        heartbeat(s);
}

/* Every SYNC_LOG_EVERY seconds while down (the bus said the first failure itself). */
static void say_down(struct sync *s, double now)
{
    if (now - s->down_said < SYNC_LOG_EVERY)
        return;
    s->down_said = now;
    LOG_WARN("redis %s down for %.0f s (%s): %" PRIu64 " message(s) not published to other nodes so far; /health "
             "answers 503",
             bus_describe(s->bus), now - s->down_at, bus_last_error(s->bus), failed(s) - s->failed_at_down);
}

static void say_shorts(struct sync *s, double now)
{
    if (!s->unsaid || now - s->short_said < SYNC_LOG_EVERY)
        return;
    LOG_WARN("%" PRIu64 " more short publish(es) in the last %.0f s, %" PRIu64 " participant(s) missed (last: %s); "
             "%" PRIu64 " in all",
             s->unsaid, now - s->short_said, s->unsaid_missing, s->last_short, s->short_total);
    s->unsaid = s->unsaid_missing = 0;
    s->short_said = now;
}

/* Unsubscribe the closed rooms' channels whose linger is over (all of them when all). */
static void linger_drain(struct sync *s, double now, bool all)
{
    while (s->linger_head && (all || s->linger_head->due <= now)) {
        struct linger *l = s->linger_head;
        s->linger_head = l->next;
        if (!all)
            bus_unsubscribe(s->bus, l->name, l->len);
        free(l);
    }
    if (!s->linger_head)
        s->linger_tail = NULL;
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sync *s = (struct sync *)w->data;
    double now = ev_now(loop);
    (void)revents;
    linger_drain(s, now, false);
    say_shorts(s, now);
    if (!bus_is_up(s->bus)) {
        say_down(s, now);
        return;
    }
    double clock = bus_clock(s);
    peers_prune(&s->peers, clock);
    uint32_t alive = peers_alive(&s->peers, clock);
    if (alive < s->alive_said)
        LOG_INFO("bus: %" PRIu32 " other participant(s) alive (was %" PRIu32 ")", alive, s->alive_said);
    s->alive_said = alive;
    if (!s->leaving)
        heartbeat(s);
}

/* ---- setup ---- */

static int init_names(struct sync *s, char *err, size_t errlen)
{
    int n = snprintf(s->hb_channel, sizeof s->hb_channel, "%s-nodes", s->cfg.prefix);
    s->hb_len = (size_t)n;
    for (uint32_t i = 0; s->cfg.sio_key && i < s->cfg.sio_nsp_count && i < PEERS_NSP_MAX; i++) {
        size_t len = strlen(s->cfg.sio_key) + strlen(s->cfg.sio_nsps[i]) + 4;
        if (!(s->sio_patterns[i] = malloc(len))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        snprintf(s->sio_patterns[i], len, "%s#%s#*", s->cfg.sio_key, s->cfg.sio_nsps[i]);
    }
    if (peers_init(&s->peers, s->cfg.node_id, s->cfg.sio_key, s->cfg.sio_nsps,
                   s->cfg.sio_key ? s->cfg.sio_nsp_count : 0) < 0 ||
        bus_subscribe(s->bus, s->hb_channel, s->hb_len) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

struct sync *sync_new(struct ev_loop *loop, const struct sync_config *cfg, char *err, size_t errlen)
{
    struct sync *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->loop = loop;
    s->prefix_len = strlen(cfg->prefix);
    s->node_len = strlen(cfg->node_id);
    s->sio_key_len = cfg->sio_key ? strlen(cfg->sio_key) : 0;
    struct bus_options o = {.url = cfg->url,
                            .ca_file = cfg->ca_file,
                            .tls_insecure = cfg->insecure,
                            .retry_max = cfg->retry_max > 0 ? cfg->retry_max : SYNC_RETRY_MAX,
                            .on_message = on_bus_message,
                            .on_link = on_link,
                            .on_published = on_published,
                            .ctx = s}; /* the bus logs link edges itself */
    s->bus = bus_new(loop, &o, err, errlen);
    if (!s->bus || init_names(s, err, errlen) < 0) {
        sync_free(s);
        return NULL;
    }
    s->down_at = s->down_said = ev_now(loop);
    ev_timer_init(&s->tick, on_tick, SYNC_HEARTBEAT, SYNC_HEARTBEAT);
    s->tick.data = s;
    ev_timer_start(loop, &s->tick);
    return s;
}

void sync_free(struct sync *s)
{
    if (!s)
        return;
    ev_timer_stop(s->loop, &s->tick);
    bus_free(s->bus);
    linger_drain(s, 0, true);
    peers_free(&s->peers);
    for (int i = 0; i < PEERS_NSP_MAX; i++)
        free(s->sio_patterns[i]);
    free(s->ring);
    buf_free(&s->out);
    free(s);
}

/* ---- rooms and publishes ---- */

void sync_room_open(struct sync *s, const struct room *room)
{
    char ch[CHANNEL_MAX];
    if (bus_subscribe(s->bus, ch, channel_name(s, room->name, room->name_len, ch)) < 0)
        LOG_ERR("room %s: cannot subscribe (out of memory)", room->name);
}

/* The channel is kept for SYNC_LINGER more seconds: the others still expect us there until our next heartbeat. */
void sync_room_close(struct sync *s, const struct room *room)
{
    char ch[CHANNEL_MAX];
    size_t len = channel_name(s, room->name, room->name_len, ch);
    struct linger *l = malloc(sizeof *l + len);
    if (!l) {
        bus_unsubscribe(s->bus, ch, len);
        return;
    }
    *l = (struct linger){.due = ev_now(s->loop) + SYNC_LINGER, .len = len};
    memcpy(l->name, ch, len);
    if (s->linger_tail)
        s->linger_tail->next = l;
    else
        s->linger_head = l;
    s->linger_tail = l;
}

void sync_publish(struct sync *s, const struct room *room, uint64_t client_id, uint8_t opcode, const void *payload,
                  size_t len)
{
    char ch[CHANNEL_MAX], head[WIRE_HEADER_MAX];
    size_t hlen = wire_room_header(head, s->cfg.node_id, client_id, opcode);
    size_t chlen = channel_name(s, room->name, room->name_len, ch);
    struct expect e = {.kind = EXPECT_ROOM, .room = peers_hash(room->name, room->name_len)};
    s->out.rpos = s->out.wpos = 0;
    if (buf_append(&s->out, head, hlen) < 0 || buf_append(&s->out, payload, len) < 0)
        return; /* out of memory: the bus counts nothing, but the message cannot leave this node */
    if (s->peers.n) {
        struct peers_target t = {.room = e.room};
        e.others = peers_expect(&s->peers, &t, bus_clock(s), NULL, 0);
        e.self = bus_confirmed(s->bus, false, ch, chlen);
    }
    publish(s, ch, chlen, buf_head(&s->out), buf_len(&s->out), &e);
    /* Large payloads should not pin a large block for the life of the node. */
    if (s->out.cap > 65536)
        buf_free(&s->out);
}

int sync_psubscribe(struct sync *s, const char *pattern, size_t len)
{
    return bus_psubscribe(s->bus, pattern, len);
}

int sync_subscribe(struct sync *s, const char *channel, size_t len)
{
    return bus_subscribe(s->bus, channel, len);
}

void sync_publish_raw(struct sync *s, const char *channel, size_t channel_len, const void *data, size_t len, int nsp)
{
    struct expect e = {.kind = EXPECT_NONE};
    if (nsp >= 0 && nsp < PEERS_NSP_MAX && s->sio_patterns[nsp] && s->peers.n) {
        struct peers_target t = {.sio = true, .nsp = (uint32_t)nsp};
        e = (struct expect){.kind = EXPECT_SIO, .nsp = (uint8_t)nsp};
        e.others = peers_expect(&s->peers, &t, bus_clock(s), NULL, 0);
        e.self = bus_confirmed(s->bus, true, s->sio_patterns[nsp], strlen(s->sio_patterns[nsp]));
    }
    publish(s, channel, channel_len, data, len, &e);
}

bool sync_is_up(const struct sync *s)
{
    return bus_is_up(s->bus);
}

bool sync_health(const struct sync *s, char *why, size_t why_len)
{
    if (bus_is_up(s->bus))
        return true;
    const char *err = bus_last_error(s->bus);
    snprintf(why, why_len, "redis %s unreachable for %.1f s: %s", bus_describe(s->bus),
             ev_now(s->loop) - bus_down_since(s->bus), err[0] ? err : "connecting");
    return false;
}

void sync_goodbye(struct sync *s)
{
    if (s->leaving)
        return;
    s->leaving = true;
    if (!bus_is_up(s->bus))
        return;
    s->out.rpos = s->out.wpos = 0;
    if (peers_encode_bye(&s->out, &s->peers, (uint32_t)getpid()) < 0)
        return;
    struct expect e = {.kind = EXPECT_NONE};
    publish(s, s->hb_channel, s->hb_len, buf_head(&s->out), buf_len(&s->out), &e);
}

void sync_get_stats(const struct sync *s, struct sync_stats *out)
{
    bool up = bus_is_up(s->bus);
    *out = (struct sync_stats){.short_publishes = s->short_total,
                               .short_receivers = s->short_missing,
                               .participants = up ? peers_alive(&s->peers, bus_clock(s)) + 1 : 0,
                               .down_seconds = up ? 0 : ev_now(s->loop) - bus_down_since(s->bus)};
}

const struct bus_stats *sync_bus_stats(const struct sync *s)
{
    return bus_get_stats(s->bus);
}
