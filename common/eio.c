/* Engine.IO / Socket.IO packets: decode, encode, polling payloads, ids, the open packet; see eio.h. */
#include "common/eio.h"

#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static struct jscan_span span(const char *p, const char *end)
{
    return (struct jscan_span){p, (size_t)(end - p)};
}

/* ---- packets ---- */

static int cut(struct eio_packet *k)
{
    k->cut = true;
    return 0;
}

/* What a payload may be: socket.io-parser's isPayloadValid, and Engine.IO's open packet. */
#define ALLOW_EMPTY  0x01
#define ALLOW_OBJECT 0x02
#define ALLOW_ARRAY  0x04
#define ALLOW_STRING 0x08

/* The rest of the packet, [p, end), is one JSON value of an allowed kind (or nothing, if allowed). */
static int payload(const char *p, const char *end, bool whole, int allow, struct eio_packet *k)
{
    if (p == end && whole)
        return (allow & ALLOW_EMPTY) ? 0 : -1;
    p = jscan_ws(p, end); /* whitespace alone is no payload: JSON.parse refuses it */
    if (p == end)
        return !whole ? cut(k) : -1;
    if (!((*p == '{' && (allow & ALLOW_OBJECT)) || (*p == '[' && (allow & ALLOW_ARRAY)) ||
          (*p == '"' && (allow & ALLOW_STRING))))
        return -1;
    int rc = jscan_value(&p, end, 0);
    if (rc < 0 || (rc == 0 && whole))
        return -1;
    if (rc == 1 && jscan_ws(p, end) != end) /* something after the value */
        return -1;
    return whole ? 0 : cut(k);
}

static bool is_reserved(struct jscan_span name)
{
    static const char *const reserved[] = {"connect",       "connect_error", "disconnect",
                                           "disconnecting", "newListener",   "removeListener"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == name.len && memcmp(reserved[i], name.p, name.len) == 0)
            return true;
    return false;
}

/* ["NAME", arg, ...] from p: the name and the first argument's spans. Returns as the scanners. */
static int event_array(const char *p, const char *end, struct eio_packet *k)
{
    int rc;
    p = jscan_ws(p, end);
    if (p == end)
        return 0;
    if (*p != '[')
        return -1;
    const char *name = p = jscan_ws(p + 1, end);
    if (p == end)
        return 0;
    if (*p == '"')
        rc = jscan_string(&p, end);
    else if (*p == '-' || is_digit(*p))
        rc = jscan_number(&p, end);
    else
        return -1;
    if (rc < 1)
        return rc;
    k->event = *name == '"' ? span(name + 1, p - 1) : span(name, p);
    if (*name == '"' && is_reserved(k->event))
        return -1;
    for (bool first = true;; first = false) {
        p = jscan_ws(p, end);
        if (p == end)
            return 0;
        if (*p == ']')
            return jscan_ws(p + 1, end) == end ? 1 : -1;
        if (*p != ',')
            return -1;
        const char *arg = p = jscan_ws(p + 1, end);
        rc = jscan_value(&p, end, 1);
        if (first)
            k->arg = span(arg, rc == 1 ? p : end);
        if (rc < 1)
            return rc;
    }
}

/* Digits at *pp (at most max of them) into *v, *pp past them; 0 when the buffer ends in them (they are then set
 * too: a whole message may end with an ack id). */
static int number_field(const char **pp, const char *end, int max, int64_t *v)
{
    const char *p = *pp;
    int64_t x = 0;
    for (; p < end && is_digit(*p); p++) {
        if (p - *pp == max)
            return -1;
        x = x * 10 + (*p - '0');
    }
    *v = x;
    *pp = p;
    return p == end ? 0 : 1;
}

/* The Socket.IO packet inside an Engine.IO message, at p. */
static int sio_message(const char *p, const char *end, bool whole, struct eio_packet *k)
{
    int64_t v;
    int rc;
    if (p == end)
        return whole ? -1 : cut(k);
    if (*p < '0' || *p > '6')
        return -1;
    k->type = *p++ - '0';
    bool binary = k->type == EIO_BINARY_EVENT || k->type == EIO_BINARY_ACK;
    if (binary) {
        if (p == end || !is_digit(*p))
            return p == end && !whole ? cut(k) : -1;
        if ((rc = number_field(&p, end, EIO_ATTACH_DIGITS, &v)) < 1)
            return rc == 0 && !whole ? cut(k) : -1; /* the '-' must follow */
        if (*p++ != '-')
            return -1;
        k->attachments = (uint32_t)v;
    }
    if (p < end && *p == '/') {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if ((comma ? comma : end) - p > EIO_NSP_MAX)
            return -1;
        if (!comma && !whole)
            return cut(k);
        k->nsp = span(p, comma ? comma : end);
        p = comma ? comma + 1 : end;
    }
    if (p < end && is_digit(*p)) { /* after any type, as socket.io-parser reads it: the receiver ignores it */
        if ((rc = number_field(&p, end, EIO_ACK_DIGITS, &k->ack)) < 0)
            return -1;
        if (rc == 0 && !whole)
            return cut(k);
    }
    k->data = span(p, end);
    switch (k->type) {
    case EIO_CONNECT: return payload(p, end, whole, ALLOW_EMPTY | ALLOW_OBJECT, k);
    case EIO_DISCONNECT: return payload(p, end, whole, ALLOW_EMPTY, k);
    case EIO_CONNECT_ERROR: return payload(p, end, whole, ALLOW_OBJECT | ALLOW_STRING, k);
    case EIO_ACK:
    case EIO_BINARY_ACK: return payload(p, end, whole, ALLOW_ARRAY, k); /* isPacketValid: an ACK's data is an array */
    default: break;
    }
    /* (BINARY_)EVENT. A head that holds the whole array is cut too: what follows can only be whitespace. */
    rc = event_array(p, end, k);
    if (rc < 0 || (rc == 0 && whole))
        return -1;
    return whole ? 0 : cut(k);
}

int eio_decode(const char *buf, size_t len, bool whole, struct eio_packet *k)
{
    *k = (struct eio_packet){.type = -1, .ack = -1, .nsp = {"/", 1}};
    const char *p = buf, *end = buf + len;
    if (p == end || *p < '0' || *p > '6')
        return -1;
    k->eio = *p++ - '0';
    k->data = span(p, end);
    if (k->eio == EIO_OPEN)
        return payload(p, end, whole, ALLOW_OBJECT, k);
    if (k->eio == EIO_MESSAGE)
        return sio_message(p, end, whole, k);
    return whole ? 0 : cut(k); /* close, ping, pong, upgrade, noop: any text ("2probe") */
}

/* ---- encoders ---- */

size_t eio_event_max(size_t nsp_len, size_t event_len, size_t arg_len)
{
    return 2 + nsp_len + 1 + EIO_ACK_DIGITS + 2 + event_len + 3 + arg_len * 6 + 2;
}

/* Copy the characters of s (no NUL: a packet is not a C string); returns how many. */
static size_t put_str(char *out, const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        out[n] = s[n];
    return n;
}

/* arg as a JSON string body (no quotes): '"' and '\' escaped, control bytes as \u00XX. */
static size_t put_escaped(char *out, const char *arg, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)arg[i];
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += put_str(out + n, "\\u00");
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        } else {
            out[n++] = (char)ch;
        }
    }
    return n;
}

/* An ack id's digits (ack >= 0, below 10^EIO_ACK_DIGITS). */
static size_t put_ack(char *out, int64_t ack)
{
    char tmp[24];
    size_t n = 0, len = 0;
    do
        tmp[len++] = (char)('0' + ack % 10);
    while ((ack /= 10) > 0);
    while (len)
        out[n++] = tmp[--len];
    return n;
}

static bool ack_ok(int64_t ack)
{
    return ack < 0 || ack <= INT64_C(999999999999999); /* EIO_ACK_DIGITS digits */
}

size_t eio_encode_head(char *out, size_t cap, int type, uint32_t attachments, const char *nsp, size_t nsp_len,
                       int64_t ack)
{
    char head[EIO_HEAD_MAX(EIO_NSP_MAX)];
    bool root = !nsp || (nsp_len == 1 && *nsp == '/');
    if (type < EIO_CONNECT || type > EIO_BINARY_ACK || nsp_len > EIO_NSP_MAX || !ack_ok(ack))
        return 0;
    size_t n = 0;
    head[n++] = '4';
    head[n++] = (char)('0' + type);
    if (type == EIO_BINARY_EVENT || type == EIO_BINARY_ACK) {
        n += put_ack(head + n, attachments);
        head[n++] = '-';
    }
    if (!root) {
        memcpy(head + n, nsp, nsp_len);
        n += nsp_len;
        head[n++] = ',';
    }
    if (ack >= 0)
        n += put_ack(head + n, ack);
    if (n > cap)
        return 0;
    memcpy(out, head, n);
    return n;
}

size_t eio_encode_event(char *out, size_t cap, const char *nsp, const char *event, const char *arg, size_t arg_len)
{
    return eio_encode_emit(out, cap, nsp, event, -1, arg, arg_len);
}

/* 42/nsp,ID["EVENT", : what every EVENT written here starts with (no namespace for "/", no ID for ack < 0). */
static size_t put_event_head(char *out, size_t cap, const char *nsp, const char *event, int64_t ack)
{
    size_t n = eio_encode_head(out, cap, EIO_EVENT, 0, nsp, nsp ? strlen(nsp) : 0, ack);
    if (!n)
        return 0;
    out[n++] = '[';
    out[n++] = '"';
    n += put_str(out + n, event);
    n += put_str(out + n, "\",");
    return n;
}

size_t eio_encode_emit(char *out, size_t cap, const char *nsp, const char *event, int64_t ack, const char *arg,
                       size_t arg_len)
{
    if (cap < eio_event_max(nsp ? strlen(nsp) : 0, strlen(event), arg_len) || !ack_ok(ack))
        return 0;
    size_t n = put_event_head(out, cap, nsp, event, ack);
    if (!n)
        return 0;
    out[n++] = '"';
    n += put_escaped(out + n, arg, arg_len);
    out[n++] = '"';
    out[n++] = ']';
    return n;
}

size_t eio_encode_emit_json(char *out, size_t cap, const char *nsp, const char *event, int64_t ack, const char *json,
                            size_t json_len)
{
    if (cap < eio_event_max(nsp ? strlen(nsp) : 0, strlen(event), json_len) || !ack_ok(ack))
        return 0;
    size_t n = put_event_head(out, cap, nsp, event, ack);
    if (!n)
        return 0;
    memcpy(out + n, json, json_len);
    n += json_len;
    out[n++] = ']';
    return n;
}

size_t eio_encode_event_array(char *out, size_t cap, const char *nsp, const char *array, size_t array_len)
{
    size_t n = eio_encode_head(out, cap, EIO_EVENT, 0, nsp, nsp ? strlen(nsp) : 0, -1);
    if (!n || cap - n < array_len)
        return 0;
    memcpy(out + n, array, array_len);
    return n + array_len;
}

size_t eio_encode_binary_event(char *out, size_t cap, const char *nsp, const char *event, int64_t ack)
{
    static const char tail[] = "\",{\"_placeholder\":true,\"num\":0}]";
    size_t nlen = nsp ? strlen(nsp) : 0, elen = strlen(event);
    if (cap < EIO_BINARY_HEAD_MAX(nlen, elen))
        return 0;
    size_t n = eio_encode_head(out, cap, EIO_BINARY_EVENT, 1, nsp, nlen, ack);
    if (!n)
        return 0;
    n += put_str(out + n, "[\"");
    n += put_str(out + n, event);
    n += put_str(out + n, tail);
    return n;
}

size_t eio_encode_control(char *out, size_t cap, int type, const char *nsp, const char *json)
{
    size_t nlen = nsp ? strlen(nsp) : 0, need = 2 + (nsp ? nlen + 1 : 0) + (json ? strlen(json) : 0);
    if (cap < need + 1)
        return 0;
    size_t n = eio_encode_head(out, cap, type, 0, nsp, nlen, -1);
    if (n && json)
        n += put_str(out + n, json);
    return n;
}

/* ---- binary packets ---- */

int eio_placeholder_num(struct jscan_span v)
{
    struct jscan_span ph, num;
    if (!v.len || v.p[0] != '{' || jscan_member(v.p, v.len, "_placeholder", &ph) != 1 || ph.len != 4 ||
        memcmp(ph.p, "true", 4) != 0 || jscan_member(v.p, v.len, "num", &num) != 1 || num.len != 1 ||
        !is_digit(num.p[0]))
        return -1;
    /* exactly those two members: count the top-level commas (a valid object: strings hold the only others) */
    const char *p = v.p + 1, *end = v.p + v.len - 1;
    int commas = 0;
    while ((p = jscan_ws(p, end)) < end) {
        if (*p == '"')
            jscan_string(&p, end);
        else
            commas += *p++ == ',';
    }
    return commas == 1 ? num.p[0] - '0' : -1;
}

/* ---- the polling transport ---- */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (is_digit(c))
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long eio_base64_len(const char *s, size_t len)
{
    if (len % 4 || len > (size_t)LONG_MAX / 2)
        return -1;
    size_t pad = 0;
    if (len && s[len - 1] == '=')
        pad = len >= 2 && s[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++)
        if (b64_value(s[i]) < 0)
            return -1;
    /* The bits a padded quantum drops must be zero, as a canonical encoder writes them (Node's is canonical). */
    if (pad && (b64_value(s[len - pad - 1]) & (pad == 2 ? 0x0f : 0x03)))
        return -1;
    return (long)(len / 4 * 3 - pad);
}

long eio_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    long n = eio_base64_len(s, len);
    if (n < 0 || (size_t)n > cap || len > INT_MAX)
        return -1;
    if (len == 0)
        return 0;
    /* EVP_DecodeBlock writes whole quanta (padding as zero bytes): decode the last quantum apart, so out needs
     * only the real length. */
    size_t head = len - 4;
    unsigned char last[3];
    if (head && EVP_DecodeBlock(out, (const unsigned char *)s, (int)head) < 0)
        return -1;
    if (EVP_DecodeBlock(last, (const unsigned char *)s + head, 4) < 0)
        return -1;
    memcpy(out + head / 4 * 3, last, (size_t)n - head / 4 * 3);
    return n;
}

size_t eio_encode_binary(char *out, size_t cap, const void *data, size_t len)
{
    size_t need = 1 + (len + 2) / 3 * 4 + 1;
    if (cap < need || len > INT_MAX / 2)
        return 0;
    out[0] = 'b';
    return 1 + (size_t)EVP_EncodeBlock((unsigned char *)out + 1, data, (int)len);
}

long eio_decode_binary(char *item, size_t len)
{
    if (len == 0 || item[0] != 'b')
        return -1;
    /* In place is safe: EVP_DecodeBlock reads each 4-character quantum before writing its 3 bytes, and the bytes
     * written stay behind the text still to read. */
    return eio_base64_decode(item + 1, len - 1, (unsigned char *)item, len);
}

int eio_payload_next(const char *buf, size_t len, size_t *off, struct eio_item *it)
{
    /* At the end unless a separator (or nothing at all) came last: then an empty item is due. */
    if (*off >= len && len && buf[len - 1] != EIO_RS)
        return 0;
    const char *p = buf + *off, *end = buf + len, *rs = p < end ? memchr(p, EIO_RS, (size_t)(end - p)) : NULL;
    const char *stop = rs ? rs : end;
    it->text = span(p, stop);
    it->binary = p < stop && *p == 'b';
    if (stop == p)
        return -1;
    *off = (size_t)((rs ? rs + 1 : end) - buf);
    return 1;
}

/* A whole non-negative JSON integer (at most 10 digits) into *v. */
static bool json_uint32(struct jscan_span v, uint32_t *out)
{
    uint64_t x = 0;
    if (v.len == 0 || v.len > 10)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (!is_digit(v.p[i]))
            return false;
        x = x * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (x > UINT32_MAX)
        return false;
    *out = (uint32_t)x;
    return true;
}

static bool sid_ok(struct jscan_span v)
{
    if (v.len < 3 || v.len > 66 || v.p[0] != '"' || v.p[v.len - 1] != '"')
        return false;
    for (size_t i = 1; i + 1 < v.len; i++) {
        char ch = v.p[i];
        if (!(is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Does the JSON array arr list the string "websocket"? (arr is valid JSON: jscan_member checked it.) */
static bool lists_websocket(struct jscan_span arr)
{
    const char *p = arr.p, *end = arr.p + arr.len;
    if (arr.len == 0 || *p != '[')
        return false;
    p = jscan_ws(p + 1, end);
    while (p < end && *p != ']') {
        const char *v = p;
        if (jscan_value(&p, end, 1) != 1)
            return false;
        if (p - v == 11 && memcmp(v, "\"websocket\"", 11) == 0)
            return true;
        p = jscan_ws(p, end);
        p = jscan_ws(p + (p < end && *p == ','), end);
    }
    return false;
}

int eio_open_parse(const char *obj, size_t len, bool need_sid, struct eio_open *o, const char **why)
{
    struct jscan_span v;
    *o = (struct eio_open){0};
    int rc = jscan_member(obj, len, "pingInterval", &v);
    if (rc < 0) {
        *why = "the open packet is not a JSON object";
        return -1;
    }
    if (rc == 0 || !json_uint32(v, &o->ping_interval) || jscan_member(obj, len, "pingTimeout", &v) != 1 ||
        !json_uint32(v, &o->ping_timeout)) {
        *why = "Engine.IO open packet without pingInterval/pingTimeout";
        return -1;
    }
    rc = jscan_member(obj, len, "sid", &v);
    if (rc == 1 && sid_ok(v))
        o->sid = span(v.p + 1, v.p + v.len - 1);
    else if (need_sid) {
        *why = "Engine.IO open packet without a valid sid";
        return -1;
    }
    if (jscan_member(obj, len, "upgrades", &v) == 1)
        o->upgrade_ws = lists_websocket(v);
    return 0;
}

int eio_error_code(const char *body, size_t len)
{
    struct jscan_span v;
    uint32_t code;
    if (jscan_member(body, len, "code", &v) != 1 || v.len > 2 || !json_uint32(v, &code))
        return -1;
    return (int)code;
}

/* ---- event arguments ---- */

bool eio_event_split(const char *data, size_t len, const char **name, size_t *name_len, const char **rest,
                     size_t *rest_len)
{
    const char *end = data + len, *p = jscan_ws(data, end), *q;
    if (p >= end || *p != '[')
        return false;
    p = jscan_ws(p + 1, end);
    q = p;
    if (jscan_value(&q, end, 1) != 1)
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

/* ---- ids and the open packet ---- */

void eio_make_id(const uint8_t rnd[EIO_ID_RANDOM], char out[EIO_ID_LEN + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0, o = 0; i < EIO_ID_RANDOM; i += 3) {
        uint32_t v = (uint32_t)rnd[i] << 16 | (uint32_t)rnd[i + 1] << 8 | rnd[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    out[EIO_ID_LEN] = '\0';
}

static int b64url_value(char ch)
{
    return ch >= 'A' && ch <= 'Z'   ? ch - 'A'
           : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
           : ch >= '0' && ch <= '9' ? ch - '0' + 52
           : ch == '-'              ? 62
           : ch == '_'              ? 63
                                    : -1;
}

bool eio_parse_id(const char *s, size_t len, uint8_t out[EIO_ID_RANDOM])
{
    if (len != EIO_ID_LEN)
        return false;
    for (size_t i = 0, o = 0; i < EIO_ID_LEN; i += 4, o += 3) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = b64url_value(s[i + k]);
            if (d < 0)
                return false;
            v = v << 6 | (uint32_t)d;
        }
        out[o] = (uint8_t)(v >> 16), out[o + 1] = (uint8_t)(v >> 8), out[o + 2] = (uint8_t)v;
    }
    return true;
}

size_t eio_open_packet(char *out, const char *sid, uint32_t ping_interval_ms, uint32_t ping_timeout_ms,
                       uint64_t max_payload, bool polling)
{
    int n = snprintf(out, EIO_OPEN_MAX,
                     "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%" PRIu32 ",\"pingTimeout\":%" PRIu32
                     ",\"maxPayload\":%" PRIu64 "}",
                     sid, polling ? "\"websocket\"" : "", ping_interval_ms, ping_timeout_ms, max_payload);
    return n < 0 || n >= EIO_OPEN_MAX ? 0 : (size_t)n;
}
