/* Message-body framing: which of the next bytes on a connection still belong to the current HTTP/1.1 message, and,
 * for a client that wants the body itself, its data without the chunked framing. The balancer never buffers a body
 * whole and never re-encodes one; it only has to know where each message ends, so the next request head
 * (keep-alive, pipelining) or the end of a response is found at the right byte. Getting that wrong is request
 * smuggling, so the chunked framing is parsed strictly (RFC 9112 section 7.1): hex sizes without sign, prefix or
 * overflow, CRLF line ends only (a bare LF or CR is an error), chunk extensions and trailer fields bounded in
 * length, and the CRLF after each chunk's data checked. loadgen decodes polling responses with the same parser
 * (body_decode, in place, as picohttpparser's phr_decode_chunked does), so both read one grammar.
 *
 * The parser is incremental and allocation-free: bytes may arrive split anywhere, one byte at a time included. */
#ifndef COMMON_BODY_H
#define COMMON_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BODY_MAX_LINE 4096 /* one chunk-size line (with extensions) or one trailer field, CRLF excluded */

enum body_kind {
    BODY_NONE = 0,    /* no body: done at once */
    BODY_LENGTH,      /* Content-Length bytes */
    BODY_CHUNKED,     /* Transfer-Encoding: chunked, through the last chunk and the trailer section */
    BODY_UNTIL_CLOSE, /* a response without framing: everything until the server closes */
};

struct body {
    uint64_t remaining; /* BODY_LENGTH: bytes left; BODY_CHUNKED: data bytes left in the current chunk */
    uint64_t budget;    /* BODY_CHUNKED: data bytes later chunks may hold, UINT64_MAX: no limit (private; body_limit) */
    enum body_kind kind;
    uint32_t state;    /* chunked parser state (private) */
    uint32_t line_len; /* bytes of the current size line or trailer field so far (private) */
    bool last_chunk;   /* the zero-size chunk was seen (private) */
    bool done;
};

/* Start a body of kind; length is used for BODY_LENGTH only (0 is done at once). */
void body_init(struct body *b, enum body_kind kind, uint64_t length);

/* The next len bytes of the stream. Returns how many of them (from the start, <= len) belong to this message,
 * or -1 when the chunked framing is malformed (then the connection must be closed: where the message ends is
 * unknown). Once body_done(), it returns 0. BODY_UNTIL_CLOSE takes everything and is never done. */
ssize_t body_feed(struct body *b, const char *data, size_t len);

/* Cap a chunked body's data at max bytes in all (after body_init; none by default, and UINT64_MAX is none): a chunk
 * size that would pass it is malformed (-1) as soon as its size line ends, before its data arrives. */
void body_limit(struct body *b, uint64_t max);

/* As body_feed, and the data bytes among those taken are moved together to the front of data (in place: the
 * chunked framing is dropped; for the other kinds every byte taken is data and nothing moves). *data_len gets how
 * many; on -1 it is unspecified. */
ssize_t body_decode(struct body *b, char *data, size_t len, size_t *data_len);

/* True once the message's last byte has been fed. */
static inline bool body_done(const struct body *b)
{
    return b->done;
}

#endif
