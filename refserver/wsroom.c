/* The /ws application: upgrade into a room, relay, remote delivery, pings; see wsroom.h. */
#include "refserver/wsroom.h"

#include "common/http.h"
#include "common/log.h"
#include "refserver/conn.h"
#include "refserver/fanout.h"
#include "refserver/server.h"
#include "refserver/sync.h"

#include <inttypes.h>

#define DEFAULT_ROOM "all"

/* A /ws member other than the sender (ctx) and still open takes the frame. */
static bool offer(struct room_member *m, struct slice *const *frames, size_t n, void *ctx)
{
    struct conn *c = container_of(m, struct conn, member);
    return c != ctx && c->state == CONN_WS && conn_offer(c, frames, n);
}

/* frame to every member of room but skip (NULL: none). */
static void deliver(struct server *s, struct room *room, struct slice *f, struct conn *skip)
{
    s->stats.msgs_out += fanout(room, &f, 1, offer, skip);
}

void wsroom_deliver(void *ctx, struct room *room, uint8_t opcode, const char *payload, size_t len)
{
    struct server *s = ctx;
    s->stats.bus_msgs_in++;
    struct slice *f = ws_frame_slice(opcode, payload, len);
    if (!f)
        return;
    deliver(s, room, f, NULL);
    slice_unref(f);
}

/* CONN_WS: a whole message from c: publish it to the other nodes, then deliver it to the local room. */
static void relay(struct conn *c, uint8_t opcode, uint8_t *payload, size_t len)
{
    struct server *s = c->srv;
    struct room *room = c->member.room;
    s->stats.msgs_in++;
    if (s->sync)
        sync_publish(s->sync, room, c->id, opcode, payload, len);
    if (room->count < 2)
        return;
    struct slice *f = ws_frame_slice(opcode, payload, len);
    if (!f) {
        LOG_ERR("client %" PRIu64 ": out of memory encoding a frame", c->id);
        return;
    }
    deliver(s, room, f, c);
    slice_unref(f);
}

/* CONN_WS, stays CONN_WS or enters CONN_CLOSING: ping when quiet, close when silent too long. */
static void on_timer(struct conn *c)
{
    const struct server_config *cfg = &c->srv->cfg;
    double quiet = ev_now(c->srv->loop) - c->last_rx;
    if (quiet >= cfg->idle_timeout) {
        c->srv->stats.idle_closed++;
        conn_start_closing(c, WS_CLOSE_GOING_AWAY, "idle timeout", false);
        return;
    }
    if (quiet >= cfg->ping_interval && !(c->flags & CONN_FL_PINGED)) {
        c->flags |= CONN_FL_PINGED;
        conn_send(c, WS_OP_PING, "", 0);
    }
    double next = cfg->ping_interval - quiet;
    if (next <= 0 || cfg->idle_timeout - quiet < next)
        next = cfg->idle_timeout - quiet;
    conn_arm_timer(c, next);
}

/* Any state -> CONN_CLOSED: out of the room. */
static void on_gone(struct conn *c)
{
    c->srv->stats.ws_clients--;
    room_leave(&c->srv->rooms, &c->member);
}

static const struct conn_ops wsroom_ops = {.on_message = relay, .on_timer = on_timer, .on_gone = on_gone};

int wsroom_upgrade(struct conn *c, const struct http_head *h)
{
    struct server *s = c->srv;
    char accept[WS_ACCEPT_LEN + 1], room[ROOM_NAME_MAX + 1];
    if (conn_check_upgrade(c, h, accept) < 0)
        return -1;
    int room_len = room_param(h->target, h->target_len, DEFAULT_ROOM, room);
    if (room_len < 0)
        return conn_respond_error(c, 400, "Bad Request", "bad room name (1-128 visible ASCII characters)", NULL);
    if (room_join(&s->rooms, &c->member, room, (size_t)room_len) < 0)
        return conn_respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    s->stats.ws_clients++;
    conn_set_owner(c, &wsroom_ops, NULL);
    conn_arm_timer(c, s->cfg.ping_interval);
    return conn_switch_protocols(c, accept);
}
