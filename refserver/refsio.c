#include "refserver/refsio.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* JSON (RFC 8259) validation by recursive descent over [p, end): each step returns the end of what it read, or
 * NULL when the input is not JSON. Nothing is decoded or allocated. */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Precondition: *p == '"'. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c != '\\')
            continue;
        if (++p >= end)
            return NULL;
        if (*p == 'u') {
            if (end - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]))
                return NULL;
            p += 4;
        } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
            return NULL;
        }
    }
    return NULL;
}

static const char *digits(const char *p, const char *end)
{
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p == start ? NULL : p;
}

static const char *skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (!(p = digits(p, end)))
        return NULL;
    if (p < end && *p == '.' && !(p = digits(p + 1, end)))
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!(p = digits(p, end)))
            return NULL;
    }
    return p;
}

static const char *skip_literal(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && !memcmp(p, word, n) ? p + n : NULL;
}

static const char *skip_value(const char *p, const char *end, int depth);

/* Precondition: *p is '[' or '{'. */
static const char *skip_container(const char *p, const char *end, int depth)
{
    char close = *p == '[' ? ']' : '}';
    bool object = close == '}';
    p = skip_ws(p + 1, end);
    if (p < end && *p == close)
        return p + 1;
    while (p) {
        if (object) {
            if (p >= end || *p != '"' || !(p = skip_string(p, end)))
                return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return NULL;
            p = skip_ws(p + 1, end);
        }
        if (!(p = skip_value(p, end, depth + 1)))
            return NULL;
        p = skip_ws(p, end);
        if (p < end && *p == close)
            return p + 1;
        if (p >= end || *p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *end, int depth)
{
    if (p >= end || depth > REFSIO_JSON_DEPTH)
        return NULL;
    switch (*p) {
    case '"': return skip_string(p, end);
    case '[':
    case '{': return skip_container(p, end, depth);
    case 't': return skip_literal(p, end, "true");
    case 'f': return skip_literal(p, end, "false");
    case 'n': return skip_literal(p, end, "null");
    default: return skip_number(p, end);
    }
}

bool refsio_json_valid(const char *p, size_t len)
{
    const char *end = p + len, *q = skip_value(skip_ws(p, end), end, 1);
    return q && skip_ws(q, end) == end;
}

/* Payload checks: the first non-space character tells the JSON value's kind (the JSON is already valid). */
static char json_kind(const char *p, size_t len)
{
    const char *q = skip_ws(p, p + len);
    return q < p + len ? *q : 0;
}

static bool reserved_event(const char *name, size_t len)
{
    static const char *const reserved[] = {"connect",       "connect_error", "disconnect",
                                           "disconnecting", "newListener",   "removeListener"};
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strlen(reserved[i]) == len && !memcmp(reserved[i], name, len))
            return true;
    return false;
}

/* An event's arguments: a non-empty array whose first element is a number or a non-reserved string. */
static bool event_args(const char *p, size_t len)
{
    const char *end = p + len, *q = skip_ws(p, end);
    if (q >= end || *q != '[')
        return false;
    q = skip_ws(q + 1, end);
    if (q < end && *q == '"') {
        const char *e = skip_string(q, end);
        return e && !reserved_event(q + 1, (size_t)(e - q - 2));
    }
    return q < end && (*q == '-' || (*q >= '0' && *q <= '9'));
}

bool refsio_event_split(const char *data, size_t len, const char **name, size_t *name_len, const char **rest,
                        size_t *rest_len)
{
    const char *end = data + len, *p = skip_ws(data, end), *q;
    if (p >= end || *p != '[')
        return false;
    p = skip_ws(p + 1, end);
    if (!(q = skip_value(p, end, 2)))
        return false;
    *name = p;
    *name_len = (size_t)(q - p);
    const char *close = end;
    while (close > q && close[-1] != ']') /* the array's own bracket: only spaces may follow it */
        close--;
    if (close == q)
        return false;
    *rest = q;
    *rest_len = (size_t)(close - 1 - q);
    return true;
}

static bool payload_valid(uint8_t type, const char *p, size_t len)
{
    if (len && !refsio_json_valid(p, len))
        return false;
    char kind = json_kind(p, len);
    switch (type) {
    case REFSIO_CONNECT: return kind == 0 || kind == '{';
    case REFSIO_DISCONNECT: return kind == 0;
    case REFSIO_CONNECT_ERROR: return kind == '{' || kind == '"';
    case REFSIO_EVENT:
    case REFSIO_BINARY_EVENT: return event_args(p, len);
    default: return kind == '['; /* ACK, BINARY_ACK */
    }
}

/* "/nsp," at p: any bytes up to the comma, as socket.io-parser reads them (a namespace the server does not serve
 * is answered with CONNECT_ERROR, not refused here). Returns the end of the name and skips the comma (a namespace
 * may also end the packet, as in "41/admin"), or NULL. */
static const char *parse_nsp(const char *p, const char *end, struct refsio_packet *pk)
{
    const char *q = memchr(p, ',', (size_t)(end - p));
    if (!q)
        q = end;
    if ((size_t)(q - p) > REFSIO_NSP_MAX)
        return NULL;
    pk->nsp = p;
    pk->nsp_len = (size_t)(q - p);
    return q < end ? q + 1 : q;
}

static int parse_message(const char *p, const char *end, struct refsio_packet *pk)
{
    if (p >= end || *p < '0' || *p > '6')
        return -1;
    pk->type = (uint8_t)(*p++ - '0');
    pk->nsp = "/";
    pk->nsp_len = 1;
    if (pk->type == REFSIO_BINARY_EVENT || pk->type == REFSIO_BINARY_ACK) {
        const char *q = digits(p, end);
        if (!q || q >= end || *q != '-' || q - p > 9) /* 9 digits fit 32 bits; socketio.c enforces the limit */
            return -1;
        for (; p < q; p++)
            pk->attachments = pk->attachments * 10 + (uint32_t)(*p - '0');
        p++;
    }
    if (p < end && *p == '/' && !(p = parse_nsp(p, end, pk)))
        return -1;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    if (q - p > REFSIO_ACK_DIGITS)
        return -1;
    if (q > p) {
        pk->has_ack = true;
        for (; p < q; p++)
            pk->ack = pk->ack * 10 + (uint64_t)(*p - '0');
    }
    pk->data = p;
    pk->data_len = (size_t)(end - p);
    return payload_valid(pk->type, pk->data, pk->data_len) ? 0 : -1;
}

int refsio_parse(const char *p, size_t len, struct refsio_packet *pk)
{
    *pk = (struct refsio_packet){0};
    if (len == 0 || p[0] < '0' || p[0] > '6')
        return -1;
    pk->eio = (uint8_t)(p[0] - '0');
    if (pk->eio == REFSIO_EIO_MESSAGE)
        return parse_message(p + 1, p + len, pk);
    pk->data = p + 1;
    pk->data_len = len - 1;
    if (pk->eio == REFSIO_EIO_OPEN) /* the handshake: a JSON object, as a client reads it */
        return json_kind(pk->data, pk->data_len) == '{' && refsio_json_valid(pk->data, pk->data_len) ? 0 : -1;
    return 0;
}

void refsio_make_id(const uint8_t rnd[REFSIO_ID_RANDOM], char out[REFSIO_ID_LEN + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0, o = 0; i < REFSIO_ID_RANDOM; i += 3) {
        uint32_t v = (uint32_t)rnd[i] << 16 | (uint32_t)rnd[i + 1] << 8 | rnd[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    out[REFSIO_ID_LEN] = '\0';
}

bool refsio_parse_id(const char *s, size_t len, uint8_t out[REFSIO_ID_RANDOM])
{
    if (len != REFSIO_ID_LEN)
        return false;
    for (size_t i = 0, o = 0; i < REFSIO_ID_LEN; i += 4, o += 3) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            char ch = s[i + k];
            int d = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                    : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                    : ch >= '0' && ch <= '9' ? ch - '0' + 52
                    : ch == '-'              ? 62
                    : ch == '_'              ? 63
                                             : -1;
            if (d < 0)
                return false;
            v = v << 6 | (uint32_t)d;
        }
        out[o] = (uint8_t)(v >> 16), out[o + 1] = (uint8_t)(v >> 8), out[o + 2] = (uint8_t)v;
    }
    return true;
}

size_t refsio_open_packet(char *out, const char *sid, uint32_t ping_interval_ms, uint32_t ping_timeout_ms,
                          uint64_t max_payload, bool polling)
{
    int n = snprintf(out, REFSIO_OPEN_MAX,
                     "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%" PRIu32 ",\"pingTimeout\":%" PRIu32
                     ",\"maxPayload\":%" PRIu64 "}",
                     sid, polling ? "\"websocket\"" : "", ping_interval_ms, ping_timeout_ms, max_payload);
    return n < 0 || n >= REFSIO_OPEN_MAX ? 0 : (size_t)n;
}

bool refsio_payload_next(const char **pos, const char *end, bool *started, const char **pkt, size_t *pkt_len)
{
    const char *p = *pos;
    if (p == end && *started)
        return false;
    *started = true;
    const char *sep = p < end ? memchr(p, REFSIO_SEPARATOR, (size_t)(end - p)) : NULL;
    *pkt = p;
    *pkt_len = (size_t)((sep ? sep : end) - p);
    /* After a trailing separator one more (empty) packet follows: keep *pos short of end until it is handed out. */
    *pos = sep ? sep + 1 : end;
    if (sep && sep + 1 == end)
        *started = false;
    return true;
}
