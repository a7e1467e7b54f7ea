#include "refserver/sync.h"

#include "common/buf.h"
#include "common/bus.h"
#include "common/log.h"
#include "common/ws.h"
#include "refserver/room.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL_MAX (64 + 1 + ROOM_NAME_MAX)

struct sync {
    struct bus *bus;
    struct sync_config cfg;
    size_t prefix_len, node_len, sio_key_len;
    struct buf out; /* header + payload of the message being published, reused */
};

size_t sync_encode_header(char *out, const char *node_id, uint64_t client_id, uint8_t opcode)
{
    int n = snprintf(out, SYNC_HEADER_MAX, "wsh1 %s %" PRIu64 " %c\n", node_id, client_id,
                     opcode == WS_OP_BINARY ? 'b' : 't');
    return n < 0 || n >= SYNC_HEADER_MAX ? 0 : (size_t)n;
}

int sync_parse(const char *msg, size_t len, const char **node, size_t *node_len, uint8_t *opcode, const char **payload,
               size_t *payload_len)
{
    const char *end = memchr(msg, '\n', len < SYNC_HEADER_MAX ? len : SYNC_HEADER_MAX);
    if (!end || len < 5 || memcmp(msg, "wsh1 ", 5) != 0)
        return -1;
    const char *p = msg + 5, *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || sp == p)
        return -1;
    *node = p;
    *node_len = (size_t)(sp - p);
    /* The client id is informational: skip its digits. */
    const char *q = sp + 1;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    if (q == sp + 1 || q + 2 != end || q[0] != ' ' || (q[1] != 't' && q[1] != 'b'))
        return -1;
    *opcode = q[1] == 'b' ? WS_OP_BINARY : WS_OP_TEXT;
    *payload = end + 1;
    *payload_len = len - (size_t)(end + 1 - msg);
    return 0;
}

static size_t channel_name(const struct sync *s, const char *room, size_t room_len, char *out)
{
    memcpy(out, s->cfg.prefix, s->prefix_len);
    out[s->prefix_len] = '#';
    memcpy(out + s->prefix_len + 1, room, room_len);
    return s->prefix_len + 1 + room_len;
}

static void on_bus_message(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len)
{
    struct sync *s = ctx;
    const char *node, *payload;
    size_t node_len, payload_len;
    uint8_t opcode;
    if (s->sio_key_len && channel_len > s->sio_key_len && !memcmp(channel, s->cfg.sio_key, s->sio_key_len) &&
        (channel[s->sio_key_len] == '#' || channel[s->sio_key_len] == '-')) { /* KEY#NSP#..., KEY-request#NSP# */
        s->cfg.sio_deliver(s->cfg.ctx, channel, channel_len, data, len);
        return;
    }
    if (channel_len <= s->prefix_len + 1 || sync_parse(data, len, &node, &node_len, &opcode, &payload, &payload_len))
        return;
    /* Our own publication: its local delivery happened when the client sent it. */
    if (node_len == s->node_len && !memcmp(node, s->cfg.node_id, node_len))
        return;
    struct room *room = room_find(s->cfg.rooms, channel + s->prefix_len + 1, channel_len - s->prefix_len - 1);
    if (room)
        s->cfg.deliver(s->cfg.ctx, room, opcode, payload, payload_len);
}

struct sync *sync_new(struct ev_loop *loop, const struct sync_config *cfg, char *err, size_t errlen)
{
    struct sync *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->prefix_len = strlen(cfg->prefix);
    s->node_len = strlen(cfg->node_id);
    s->sio_key_len = cfg->sio_key ? strlen(cfg->sio_key) : 0;
    struct bus_options o = {.url = cfg->url,
                            .ca_file = cfg->ca_file,
                            .tls_insecure = cfg->insecure,
                            .on_message = on_bus_message,
                            .ctx = s}; /* the bus logs link edges itself */
    s->bus = bus_new(loop, &o, err, errlen);
    if (!s->bus) {
        free(s);
        return NULL;
    }
    return s;
}

void sync_free(struct sync *s)
{
    if (!s)
        return;
    bus_free(s->bus);
    buf_free(&s->out);
    free(s);
}

void sync_room_open(struct sync *s, const struct room *room)
{
    char ch[CHANNEL_MAX];
    if (bus_subscribe(s->bus, ch, channel_name(s, room->name, room->name_len, ch)) < 0)
        LOG_ERR("room %s: cannot subscribe (out of memory)", room->name);
}

void sync_room_close(struct sync *s, const struct room *room)
{
    char ch[CHANNEL_MAX];
    bus_unsubscribe(s->bus, ch, channel_name(s, room->name, room->name_len, ch));
}

void sync_publish(struct sync *s, const struct room *room, uint64_t client_id, uint8_t opcode, const void *payload,
                  size_t len)
{
    char ch[CHANNEL_MAX], head[SYNC_HEADER_MAX];
    size_t hlen = sync_encode_header(head, s->cfg.node_id, client_id, opcode);
    s->out.rpos = s->out.wpos = 0;
    if (buf_append(&s->out, head, hlen) < 0 || buf_append(&s->out, payload, len) < 0)
        return; /* out of memory: the bus counts nothing, but the message cannot leave this node */
    bus_publish(s->bus, ch, channel_name(s, room->name, room->name_len, ch), buf_head(&s->out), buf_len(&s->out));
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

void sync_publish_raw(struct sync *s, const char *channel, size_t channel_len, const void *data, size_t len)
{
    bus_publish(s->bus, channel, channel_len, data, len);
}

bool sync_is_up(const struct sync *s)
{
    return bus_is_up(s->bus);
}

const struct bus_stats *sync_bus_stats(const struct sync *s)
{
    return bus_get_stats(s->bus);
}
