/* Socket.IO / Engine.IO packets for loadgen; see sio.h. Every scanner below takes [p, end) and answers 1 (done,
 * *pp advanced past what it read), 0 (the buffer ended first: more bytes could make it valid) or -1 (no more bytes
 * can: malformed). The cut/malformed split is what lets the same code check a whole message and a head. */
#include "loadgen/sio.h"

#include <limits.h>
#include <openssl/evp.h>
#include <string.h>

#define MAX_DEPTH  32  /* nesting of JSON values (the outermost is 0); deeper is refused (no unbounded recursion) */
#define MAX_ACK    15  /* digits of an ack id: below 2^53, an exact JavaScript number */
#define MAX_ATTACH 9   /* digits of an attachment count */
#define MAX_NSP    128 /* bytes of a namespace: socket.io-parser sets no bound, refserver does */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static struct sio_span span(const char *p, const char *end)
{
    return (struct sio_span){p, (size_t)(end - p)};
}

/* ---- JSON scanners ---- */

/* A string; *pp is on its opening quote. */
static int skip_string(const char **pp, const char *end)
{
    for (const char *p = *pp + 1; p < end; p++) {
        if (*p == '"') {
            *pp = p + 1;
            return 1;
        }
        if ((unsigned char)*p < 0x20)
            return -1;
        if (*p != '\\')
            continue;
        if (++p == end)
            return 0;
        if (*p == 'u') {
            for (int i = 0; i < 4; i++)
                if (++p == end)
                    return 0;
                else if (!is_hex(*p))
                    return -1;
        } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
            return -1;
        }
    }
    return 0;
}

static int skip_digits(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == end)
        return 0;
    if (!is_digit(*p))
        return -1;
    while (p < end && is_digit(*p))
        p++;
    *pp = p;
    return 1;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? followed by a byte that must be there (else more digits may come). */
static int skip_number(const char **pp, const char *end)
{
    const char *p = *pp;
    int rc;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if ((rc = skip_digits(&p, end)) < 1)
        return rc;
    if (p < end && *p == '.' && (p++, (rc = skip_digits(&p, end)) < 1))
        return rc;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if ((rc = skip_digits(&p, end)) < 1)
            return rc;
    }
    if (p == end)
        return 0;
    *pp = p;
    return 1;
}

static int skip_literal(const char **pp, const char *end, const char *lit)
{
    size_t n = strlen(lit), have = (size_t)(end - *pp);
    if (have < n)
        return memcmp(*pp, lit, have) == 0 ? 0 : -1;
    if (memcmp(*pp, lit, n) != 0)
        return -1;
    *pp += n;
    return 1;
}

static int skip_value(const char **pp, const char *end, int depth);

/* An array or object; *pp is on its '[' or '{'. */
static int skip_container(const char **pp, const char *end, int depth)
{
    char close = **pp == '[' ? ']' : '}';
    const char *p = skip_ws(*pp + 1, end);
    int rc;
    if (p < end && *p == close) {
        *pp = p + 1;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (p == end)
                return 0;
            if (*p != '"')
                return -1;
            if ((rc = skip_string(&p, end)) < 1)
                return rc;
            p = skip_ws(p, end);
            if (p == end)
                return 0;
            if (*p++ != ':')
                return -1;
        }
        if ((rc = skip_value(&p, end, depth + 1)) < 1)
            return rc;
        p = skip_ws(p, end);
        if (p == end)
            return 0;
        if (*p == close) {
            *pp = p + 1;
            return 1;
        }
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, end);
    }
}

/* Any value, after optional whitespace. */
static int skip_value(const char **pp, const char *end, int depth)
{
    const char *p = skip_ws(*pp, end);
    int rc;
    if (p == end)
        return 0;
    if (depth >= MAX_DEPTH) /* every value counts, scalars too, as refserver's relay counts them */
        return -1;
    switch (*p) {
    case '"': rc = skip_string(&p, end); break;
    case '[':
    case '{': rc = skip_container(&p, end, depth); break;
    case 't': rc = skip_literal(&p, end, "true"); break;
    case 'f': rc = skip_literal(&p, end, "false"); break;
    case 'n': rc = skip_literal(&p, end, "null"); break;
    default: rc = skip_number(&p, end); break;
    }
    if (rc == 1)
        *pp = p;
    return rc;
}

/* ---- packets ---- */

static int cut(struct sio_packet *k)
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
static int payload(const char *p, const char *end, bool whole, int allow, struct sio_packet *k)
{
    if (p == end && whole)
        return (allow & ALLOW_EMPTY) ? 0 : -1;
    p = skip_ws(p, end); /* whitespace alone is no payload: JSON.parse refuses it */
    if (p == end)
        return !whole ? cut(k) : -1;
    if (!((*p == '{' && (allow & ALLOW_OBJECT)) || (*p == '[' && (allow & ALLOW_ARRAY)) ||
          (*p == '"' && (allow & ALLOW_STRING))))
        return -1;
    int rc = skip_value(&p, end, 0);
    if (rc < 0 || (rc == 0 && whole))
        return -1;
    if (rc == 1 && skip_ws(p, end) != end) /* something after the value */
        return -1;
    return whole ? 0 : cut(k);
}

static bool is_reserved(struct sio_span name)
{
    static const char *const reserved[] = {"connect",       "connect_error", "disconnect",
                                           "disconnecting", "newListener",   "removeListener"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == name.len && memcmp(reserved[i], name.p, name.len) == 0)
            return true;
    return false;
}

/* ["NAME", arg, ...] from p: the name and the first argument's spans. Returns as the scanners. */
static int event_array(const char *p, const char *end, struct sio_packet *k)
{
    int rc;
    p = skip_ws(p, end);
    if (p == end)
        return 0;
    if (*p != '[')
        return -1;
    const char *name = p = skip_ws(p + 1, end);
    if (p == end)
        return 0;
    if (*p == '"')
        rc = skip_string(&p, end);
    else if (*p == '-' || is_digit(*p))
        rc = skip_number(&p, end);
    else
        return -1;
    if (rc < 1)
        return rc;
    k->event = *name == '"' ? span(name + 1, p - 1) : span(name, p);
    if (*name == '"' && is_reserved(k->event))
        return -1;
    for (bool first = true;; first = false) {
        p = skip_ws(p, end);
        if (p == end)
            return 0;
        if (*p == ']')
            return skip_ws(p + 1, end) == end ? 1 : -1;
        if (*p != ',')
            return -1;
        const char *arg = p = skip_ws(p + 1, end);
        rc = skip_value(&p, end, 1);
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
static int sio_message(const char *p, const char *end, bool whole, struct sio_packet *k)
{
    int64_t v;
    int rc;
    if (p == end)
        return whole ? -1 : cut(k);
    if (*p < '0' || *p > '6')
        return -1;
    k->type = *p++ - '0';
    bool binary = k->type == SIO_BINARY_EVENT || k->type == SIO_BINARY_ACK;
    if (binary) {
        if (p == end || !is_digit(*p))
            return p == end && !whole ? cut(k) : -1;
        if ((rc = number_field(&p, end, MAX_ATTACH, &v)) < 1)
            return rc == 0 && !whole ? cut(k) : -1; /* the '-' must follow */
        if (*p++ != '-')
            return -1;
        k->attachments = (uint32_t)v;
    }
    if (p < end && *p == '/') {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if ((comma ? comma : end) - p > MAX_NSP)
            return -1;
        if (!comma && !whole)
            return cut(k);
        k->nsp = span(p, comma ? comma : end);
        p = comma ? comma + 1 : end;
    }
    if (p < end && is_digit(*p)) { /* after any type, as socket.io-parser reads it: the receiver ignores it */
        if ((rc = number_field(&p, end, MAX_ACK, &k->ack)) < 0)
            return -1;
        if (rc == 0 && !whole)
            return cut(k);
    }
    k->data = span(p, end);
    switch (k->type) {
    case SIO_CONNECT: return payload(p, end, whole, ALLOW_EMPTY | ALLOW_OBJECT, k);
    case SIO_DISCONNECT: return payload(p, end, whole, ALLOW_EMPTY, k);
    case SIO_CONNECT_ERROR: return payload(p, end, whole, ALLOW_OBJECT | ALLOW_STRING, k);
    case SIO_ACK:
    case SIO_BINARY_ACK: return payload(p, end, whole, ALLOW_ARRAY, k); /* isPacketValid: an ACK's data is an array */
    default: break;
    }
    /* (BINARY_)EVENT. A head that holds the whole array is cut too: what follows can only be whitespace. */
    rc = event_array(p, end, k);
    if (rc < 0 || (rc == 0 && whole))
        return -1;
    return whole ? 0 : cut(k);
}

int sio_decode(const char *buf, size_t len, bool whole, struct sio_packet *k)
{
    *k = (struct sio_packet){.type = -1, .ack = -1, .nsp = {"/", 1}};
    const char *p = buf, *end = buf + len;
    if (p == end || *p < '0' || *p > '6')
        return -1;
    k->eio = *p++ - '0';
    k->data = span(p, end);
    if (k->eio == SIO_EIO_OPEN)
        return payload(p, end, whole, ALLOW_OBJECT, k);
    if (k->eio == SIO_EIO_MESSAGE)
        return sio_message(p, end, whole, k);
    return whole ? 0 : cut(k); /* close, ping, pong, upgrade, noop: any text ("2probe") */
}

/* ---- JSON helpers for the handshake and the options ---- */

bool sio_json_is_object(const char *s, size_t len)
{
    const char *p = skip_ws(s, s + len), *end = s + len;
    return p < end && *p == '{' && skip_value(&p, end, 0) == 1 && skip_ws(p, end) == end;
}

int sio_json_member(const char *obj, size_t len, const char *key, struct sio_span *val)
{
    if (!sio_json_is_object(obj, len))
        return -1;
    const char *end = obj + len, *p = skip_ws(skip_ws(obj, end) + 1, end);
    size_t klen = strlen(key);
    while (*p == '"') { /* valid: every skip below succeeds */
        const char *name = p + 1;
        skip_string(&p, end);
        bool match = (size_t)(p - 1 - name) == klen && memcmp(name, key, klen) == 0;
        p = skip_ws(skip_ws(p, end) + 1, end); /* past ':' */
        const char *v = p;
        skip_value(&p, end, 1);
        if (match) {
            *val = span(v, p);
            return 1;
        }
        p = skip_ws(p, end);
        p = skip_ws(p + (*p == ','), end);
    }
    return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++)
        v = v * 16 + (unsigned)(is_digit(p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
    return v;
}

/* One escape at p (after the backslash) into tmp; its length, or 0 when cut, -1 when malformed. */
static int unescape(const char *p, const char *end, char tmp[3], size_t *used)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (p == end)
        return 0;
    if (*p == 'u') {
        if (end - p < 5)
            return 0;
        for (int i = 1; i < 5; i++)
            if (!is_hex(p[i]))
                return -1;
        *used = 5;
        return (int)put_utf8(tmp, hex4(p + 1));
    }
    const char *at = *p ? strchr(from, *p) : NULL;
    if (!at)
        return -1;
    tmp[0] = to[at - from];
    *used = 1;
    return 1;
}

int sio_json_string(const char *s, size_t len, char *out, size_t cap, size_t *n)
{
    const char *p = s + 1, *end = s + len;
    *n = 0;
    if (len == 0 || *s != '"')
        return -1;
    while (p < end) {
        char tmp[3];
        size_t used = 0;
        int w = 1;
        if (*p == '"')
            return 1;
        if ((unsigned char)*p < 0x20)
            return -1;
        if (*p == '\\') {
            if ((w = unescape(p + 1, end, tmp, &used)) <= 0)
                return w;
            used++;
        } else {
            tmp[0] = *p;
            used = 1;
        }
        if (*n + (size_t)w > cap)
            return 0;
        memcpy(out + *n, tmp, (size_t)w);
        *n += (size_t)w;
        p += used;
    }
    return 0;
}

/* ---- encoders ---- */

size_t sio_event_max(size_t nsp_len, size_t event_len, size_t arg_len)
{
    return 2 + nsp_len + 1 + MAX_ACK + 2 + event_len + 3 + arg_len * 6 + 2;
}

/* Copy the characters of s (no NUL: a packet is not a C string); returns how many. */
static size_t put_str(char *out, const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        out[n] = s[n];
    return n;
}

/* The "/nsp," part: nothing for "/". */
static size_t put_nsp(char *out, const char *nsp)
{
    if (!nsp || strcmp(nsp, "/") == 0)
        return 0;
    size_t n = put_str(out, nsp);
    out[n] = ',';
    return n + 1;
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

/* An ack id's digits (ack >= 0, below 10^MAX_ACK). */
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
    return ack < 0 || ack <= INT64_C(999999999999999); /* MAX_ACK digits */
}

size_t sio_encode_event(char *out, size_t cap, const char *nsp, const char *event, const char *arg, size_t arg_len)
{
    return sio_encode_emit(out, cap, nsp, event, -1, arg, arg_len);
}

size_t sio_encode_emit(char *out, size_t cap, const char *nsp, const char *event, int64_t ack, const char *arg,
                       size_t arg_len)
{
    size_t elen = strlen(event);
    if (cap < sio_event_max(nsp ? strlen(nsp) : 0, elen, arg_len) || !ack_ok(ack))
        return 0;
    size_t n = 0;
    out[n++] = '4';
    out[n++] = '2';
    n += put_nsp(out + n, nsp);
    if (ack >= 0)
        n += put_ack(out + n, ack);
    out[n++] = '[';
    out[n++] = '"';
    n += put_str(out + n, event);
    n += put_str(out + n, "\",\"");
    n += put_escaped(out + n, arg, arg_len);
    out[n++] = '"';
    out[n++] = ']';
    return n;
}

size_t sio_encode_binary_event(char *out, size_t cap, const char *nsp, const char *event, int64_t ack)
{
    static const char tail[] = "\",{\"_placeholder\":true,\"num\":0}]";
    size_t nlen = nsp ? strlen(nsp) : 0, elen = strlen(event);
    if (cap < SIO_BINARY_HEAD_MAX(nlen, elen) || !ack_ok(ack))
        return 0;
    size_t n = put_str(out, "451-");
    n += put_nsp(out + n, nsp);
    if (ack >= 0)
        n += put_ack(out + n, ack);
    n += put_str(out + n, "[\"");
    n += put_str(out + n, event);
    n += put_str(out + n, tail);
    return n;
}

size_t sio_encode_control(char *out, size_t cap, int type, const char *nsp, const char *json)
{
    size_t need = 2 + (nsp ? strlen(nsp) + 1 : 0) + (json ? strlen(json) : 0);
    if (cap < need + 1)
        return 0;
    out[0] = '4';
    out[1] = (char)('0' + type);
    size_t n = 2 + put_nsp(out + 2, nsp);
    if (json)
        n += put_str(out + n, json);
    return n;
}

uint32_t sio_ping_deadline(uint32_t now_ms, uint32_t interval_ms, uint32_t timeout_ms)
{
    uint64_t wait = (uint64_t)interval_ms + timeout_ms;
    uint32_t due = now_ms + (uint32_t)(wait < SIO_PING_WAIT_MAX ? wait : SIO_PING_WAIT_MAX);
    return due ? due : 1;
}

bool sio_ping_overdue(uint32_t deadline, uint32_t now_ms)
{
    return deadline != 0 && (int32_t)(now_ms - deadline) > 0;
}

/* ---- binary packets ---- */

int sio_placeholder_num(struct sio_span v)
{
    struct sio_span ph, num;
    if (!v.len || v.p[0] != '{' || sio_json_member(v.p, v.len, "_placeholder", &ph) != 1 || ph.len != 4 ||
        memcmp(ph.p, "true", 4) != 0 || sio_json_member(v.p, v.len, "num", &num) != 1 || num.len != 1 ||
        !is_digit(num.p[0]))
        return -1;
    /* exactly those two members: count the top-level commas (a valid object: strings hold the only others) */
    const char *p = v.p + 1, *end = v.p + v.len - 1;
    int commas = 0;
    while ((p = skip_ws(p, end)) < end) {
        if (*p == '"')
            skip_string(&p, end);
        else
            commas += *p++ == ',';
    }
    return commas == 1 ? num.p[0] - '0' : -1;
}

int sio_asm_begin(struct sio_asm *a, const struct sio_packet *k, bool ours, uint32_t now_ms, const char **why)
{
    if (k->type != SIO_BINARY_EVENT && k->type != SIO_BINARY_ACK)
        return 0;
    if (k->attachments > SIO_MAX_ATTACHMENTS) {
        *why = "a binary packet announcing more than 10 attachments";
        return -1;
    }
    if (k->attachments == 0)
        return 0;
    int num = ours && k->type == SIO_BINARY_EVENT ? sio_placeholder_num(k->arg) : -1;
    *a = (struct sio_asm){.want = k->attachments, .carrier = num < (int)k->attachments ? num : -1, .since_ms = now_ms};
    return 1;
}

int sio_asm_attachment(struct sio_asm *a, bool *done)
{
    uint32_t i = a->got++;
    *done = a->got >= a->want;
    return a->carrier >= 0 && (uint32_t)a->carrier == i;
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

long sio_base64_len(const char *s, size_t len)
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

long sio_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    long n = sio_base64_len(s, len);
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

size_t sio_encode_binary(char *out, size_t cap, const void *data, size_t len)
{
    size_t need = 1 + (len + 2) / 3 * 4 + 1;
    if (cap < need || len > INT_MAX / 2)
        return 0;
    out[0] = 'b';
    return 1 + (size_t)EVP_EncodeBlock((unsigned char *)out + 1, data, (int)len);
}

int sio_payload_next(const char *buf, size_t len, size_t *off, struct sio_item *it)
{
    /* At the end unless a separator (or nothing at all) came last: then an empty item is due. */
    if (*off >= len && len && buf[len - 1] != SIO_RS)
        return 0;
    const char *p = buf + *off, *end = buf + len, *rs = p < end ? memchr(p, SIO_RS, (size_t)(end - p)) : NULL;
    const char *stop = rs ? rs : end;
    if (stop == p)
        return -1;
    it->text = span(p, stop);
    it->binary = *p == 'b';
    if (it->binary && sio_base64_len(p + 1, (size_t)(stop - p - 1)) < 0)
        return -1;
    *off = (size_t)((rs ? rs + 1 : end) - buf);
    return 1;
}

/* A whole non-negative JSON integer (at most 10 digits) into *v. */
static bool json_uint32(struct sio_span v, uint32_t *out)
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

static bool sid_ok(struct sio_span v)
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

/* Does the JSON array arr list the string "websocket"? (arr is valid JSON: sio_json_member checked it.) */
static bool lists_websocket(struct sio_span arr)
{
    const char *p = arr.p, *end = arr.p + arr.len;
    if (arr.len == 0 || *p != '[')
        return false;
    p = skip_ws(p + 1, end);
    while (p < end && *p != ']') {
        const char *v = p;
        if (skip_value(&p, end, 1) != 1)
            return false;
        if (p - v == 11 && memcmp(v, "\"websocket\"", 11) == 0)
            return true;
        p = skip_ws(p, end);
        p = skip_ws(p + (p < end && *p == ','), end);
    }
    return false;
}

int sio_open_parse(const char *obj, size_t len, bool need_sid, struct sio_open *o, const char **why)
{
    struct sio_span v;
    *o = (struct sio_open){0};
    int rc = sio_json_member(obj, len, "pingInterval", &v);
    if (rc < 0) {
        *why = "the open packet is not a JSON object";
        return -1;
    }
    if (rc == 0 || !json_uint32(v, &o->ping_interval) || sio_json_member(obj, len, "pingTimeout", &v) != 1 ||
        !json_uint32(v, &o->ping_timeout)) {
        *why = "Engine.IO open packet without pingInterval/pingTimeout";
        return -1;
    }
    rc = sio_json_member(obj, len, "sid", &v);
    if (rc == 1 && sid_ok(v))
        o->sid = span(v.p + 1, v.p + v.len - 1);
    else if (need_sid) {
        *why = "Engine.IO open packet without a valid sid";
        return -1;
    }
    if (sio_json_member(obj, len, "upgrades", &v) == 1)
        o->upgrade_ws = lists_websocket(v);
    return 0;
}

int sio_error_code(const char *body, size_t len)
{
    struct sio_span v;
    uint32_t code;
    if (sio_json_member(body, len, "code", &v) != 1 || v.len > 2 || !json_uint32(v, &code))
        return -1;
    return (int)code;
}
