/*
 * flatsat_board.c - the portable core: framing, msgpack, envelope and the board controller.
 *
 * C99, freestanding apart from <string.h> (memcpy, memset, strlen, strcmp). No malloc, no globals,
 * no recursion on received data. See flatsat_board.h for the API and docs/protocol.md for the wire.
 */
#include "flatsat_board.h"
#include "fsb_jobcheck.h"
#include "fsb_policy.h"

#include <float.h>
#include <string.h>

/* ============================================================================================== */
/* CRC-16/GENIBUS                                                                                 */
/* ============================================================================================== */

/* Bitwise rather than a 512-byte table: a few hundred bytes per control period do not justify the
 * flash on a small MCU. The final inversion is what makes this GENIBUS and not CCITT-FALSE: without
 * it the CRC of M || CRC(M) stays 0 over appended zero bytes (docs/protocol.md sec. 5). */
uint16_t fsb_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = 0xFFFFu;
    size_t i;
    for (i = 0; i < len; i++) {
        int bit;
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return (uint16_t)(crc ^ 0xFFFFu);
}

/* ============================================================================================== */
/* COBS                                                                                           */
/* ============================================================================================== */

void fsb_cobs_enc_begin(fsb_cobs_enc *e, uint8_t *dst, size_t cap)
{
    e->dst = dst;
    e->cap = cap;
    e->out = 0;
    e->code_pos = 0;
    e->code = 1;
    e->need_block = true;
    e->closed_full = false;
    e->overflow = false;
}

void fsb_cobs_enc_put(fsb_cobs_enc *e, uint8_t byte)
{
    if (e->overflow) {
        return;
    }
    /* Blocks are opened lazily, on the next byte: a block that fills up (254 data bytes, code 0xFF)
     * right at the end of the input needs no empty block after it. That is what the Python `cobs`
     * package emits, so both sides produce the same bytes. */
    if (e->need_block) {
        if (e->out >= e->cap) {
            e->overflow = true;
            return;
        }
        e->code_pos = e->out++;
        e->code = 1;
        e->need_block = false;
    }
    if (byte == 0) {
        e->dst[e->code_pos] = e->code;
        e->need_block = true;
        e->closed_full = false;
        return;
    }
    if (e->out >= e->cap) {
        e->overflow = true;
        return;
    }
    e->dst[e->out++] = byte;
    e->code++;
    if (e->code == 0xFFu) {
        e->dst[e->code_pos] = 0xFFu;
        e->need_block = true;
        e->closed_full = true;
    }
}

size_t fsb_cobs_enc_end(fsb_cobs_enc *e)
{
    if (e->overflow) {
        return 0;
    }
    if (e->need_block) {
        /* after a zero byte (or for empty input) the trailing, empty block still says "no zero
         * follows": code 0x01. After a full block nothing is needed. */
        if (!e->closed_full) {
            if (e->out >= e->cap) {
                return 0;
            }
            e->dst[e->out++] = 1;
        }
    } else {
        e->dst[e->code_pos] = e->code;
    }
    return e->out;
}

size_t fsb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    fsb_cobs_enc e;
    size_t i;
    fsb_cobs_enc_begin(&e, dst, cap);
    for (i = 0; i < len; i++) {
        fsb_cobs_enc_put(&e, src[i]);
    }
    return fsb_cobs_enc_end(&e);
}

bool fsb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t *out_len)
{
    size_t i = 0, o = 0;
    /* In place is safe: each block has one code byte in and at most one zero byte out, so the
     * write index never passes the read index. */
    while (i < len) {
        uint8_t code = src[i++];
        size_t n, k;
        if (code == 0) {
            return false;
        }
        n = (size_t)code - 1u;
        if (n > len - i) {
            return false; /* the code points past the end of the frame */
        }
        for (k = 0; k < n; k++) {
            uint8_t b = src[i++];
            if (b == 0) {
                return false;
            }
            dst[o++] = b;
        }
        if (i < len && code != 0xFFu) {
            dst[o++] = 0;
        }
    }
    *out_len = o;
    return true;
}

/* ============================================================================================== */
/* Frames                                                                                         */
/* ============================================================================================== */

size_t fsb_frame_encode(const uint8_t *msg, size_t len, uint8_t *dst, size_t cap)
{
    fsb_cobs_enc e;
    uint16_t crc = fsb_crc16(msg, len);
    size_t i, n;
    if (cap < 1) {
        return 0;
    }
    /* leave room for the delimiter */
    fsb_cobs_enc_begin(&e, dst, cap - 1u);
    for (i = 0; i < len; i++) {
        fsb_cobs_enc_put(&e, msg[i]);
    }
    fsb_cobs_enc_put(&e, (uint8_t)(crc >> 8)); /* big-endian: most significant byte first */
    fsb_cobs_enc_put(&e, (uint8_t)(crc & 0xFFu));
    n = fsb_cobs_enc_end(&e);
    if (n == 0) {
        return 0;
    }
    dst[n] = 0;
    return n + 1u;
}

void fsb_deframer_init(fsb_deframer *d, uint8_t *buf, size_t cap)
{
    memset(d, 0, sizeof *d);
    d->buf = buf;
    d->cap = cap;
}

size_t fsb_deframer_feed(fsb_deframer *d, uint8_t byte, const uint8_t **msg)
{
    size_t n, body;
    uint16_t crc;
    if (byte != 0) {
        if (d->discarding) {
            return 0;
        }
        if (d->len >= d->cap) {
            /* counted once, then skipped unbuffered up to its delimiter (like FrameDecoder) */
            d->stats.oversized++;
            d->discarding = true;
            d->len = 0;
            return 0;
        }
        d->buf[d->len++] = byte;
        return 0;
    }
    if (d->discarding) {
        d->discarding = false;
        return 0;
    }
    if (d->len == 0) {
        return 0; /* back-to-back delimiters: idle fill or a resync byte, not an error */
    }
    n = d->len;
    d->len = 0;
    if (!fsb_cobs_decode(d->buf, n, d->buf, &body)) {
        d->stats.bad_cobs++;
        return 0;
    }
    if (body < 3u) {
        d->stats.too_short++;
        return 0;
    }
    crc = (uint16_t)(((uint16_t)d->buf[body - 2u] << 8) | d->buf[body - 1u]);
    if (fsb_crc16(d->buf, body - 2u) != crc) {
        d->stats.bad_crc++;
        return 0;
    }
    d->stats.frames++;
    *msg = d->buf;
    return body - 2u;
}

/* ============================================================================================== */
/* msgpack writer                                                                                 */
/* ============================================================================================== */

void fsb_mpw_init(fsb_mpw *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
}

static void mpw_put(fsb_mpw *w, const uint8_t *data, size_t n)
{
    if (w->overflow) {
        return;
    }
    if (n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n > 0) {
        memcpy(w->buf + w->len, data, n);
    }
    w->len += n;
}

static void mpw_u8(fsb_mpw *w, uint8_t b)
{
    mpw_put(w, &b, 1);
}

/* A tag byte followed by `nbytes` of v, big-endian (msgpack's byte order). */
static void mpw_tagged(fsb_mpw *w, uint8_t tag, uint64_t v, unsigned nbytes)
{
    uint8_t tmp[9];
    unsigned i;
    tmp[0] = tag;
    for (i = 0; i < nbytes; i++) {
        tmp[1 + i] = (uint8_t)(v >> (8u * (nbytes - 1u - i)));
    }
    mpw_put(w, tmp, 1u + nbytes);
}

void fsb_mpw_nil(fsb_mpw *w)
{
    mpw_u8(w, 0xC0);
}

void fsb_mpw_bool(fsb_mpw *w, bool v)
{
    mpw_u8(w, v ? 0xC3 : 0xC2);
}

void fsb_mpw_uint(fsb_mpw *w, uint64_t v)
{
    if (v < 0x80u) {
        mpw_u8(w, (uint8_t)v);
    } else if (v <= 0xFFu) {
        mpw_tagged(w, 0xCC, v, 1);
    } else if (v <= 0xFFFFu) {
        mpw_tagged(w, 0xCD, v, 2);
    } else if (v <= 0xFFFFFFFFu) {
        mpw_tagged(w, 0xCE, v, 4);
    } else {
        mpw_tagged(w, 0xCF, v, 8);
    }
}

void fsb_mpw_int(fsb_mpw *w, int64_t v)
{
    /* non-negative values use the uint formats, as msgpack-python does */
    if (v >= 0) {
        fsb_mpw_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        mpw_u8(w, (uint8_t)(0xE0u | ((uint64_t)v & 0x1Fu)));
    } else if (v >= -128) {
        mpw_tagged(w, 0xD0, (uint64_t)v, 1);
    } else if (v >= -32768) {
        mpw_tagged(w, 0xD1, (uint64_t)v, 2);
    } else if (v >= -2147483647L - 1) {
        mpw_tagged(w, 0xD2, (uint64_t)v, 4);
    } else {
        mpw_tagged(w, 0xD3, (uint64_t)v, 8);
    }
}

void fsb_mpw_float32(fsb_mpw *w, float v)
{
    uint32_t bits;
    /* memcpy is the portable type pun; it assumes floats and integers share a byte order, which
     * holds on every current MCU and host */
    memcpy(&bits, &v, sizeof bits);
    mpw_tagged(w, 0xCA, bits, 4);
}

void fsb_mpw_float64(fsb_mpw *w, double v)
{
#if DBL_MANT_DIG >= 53
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    mpw_tagged(w, 0xCB, bits, 8);
#else
    /* AVR and friends: double is 32-bit, so send what we have; the protocol accepts float32 */
    fsb_mpw_float32(w, (float)v);
#endif
}

static void mpw_len_hdr(fsb_mpw *w, uint8_t tag8, uint8_t tag16, uint8_t tag32, size_t len)
{
    if (len <= 0xFFu && tag8 != 0) {
        mpw_tagged(w, tag8, len, 1);
    } else if (len <= 0xFFFFu) {
        mpw_tagged(w, tag16, len, 2);
    } else {
        mpw_tagged(w, tag32, (uint64_t)len, 4);
    }
}

void fsb_mpw_str_n(fsb_mpw *w, const char *s, size_t len)
{
    if (len > 0xFFFFFFFFu) {
        w->overflow = true;
        return;
    }
    if (len < 32u) {
        mpw_u8(w, (uint8_t)(0xA0u | len));
    } else {
        mpw_len_hdr(w, 0xD9, 0xDA, 0xDB, len);
    }
    mpw_put(w, (const uint8_t *)s, len);
}

void fsb_mpw_str(fsb_mpw *w, const char *s)
{
    fsb_mpw_str_n(w, s, strlen(s));
}

void fsb_mpw_bin(fsb_mpw *w, const uint8_t *data, size_t len)
{
    if (len > 0xFFFFFFFFu) {
        w->overflow = true;
        return;
    }
    mpw_len_hdr(w, 0xC4, 0xC5, 0xC6, len);
    mpw_put(w, data, len);
}

void fsb_mpw_array(fsb_mpw *w, uint32_t n)
{
    if (n < 16u) {
        mpw_u8(w, (uint8_t)(0x90u | n));
    } else {
        mpw_len_hdr(w, 0, 0xDC, 0xDD, n);
    }
}

void fsb_mpw_map(fsb_mpw *w, uint32_t n)
{
    if (n < 16u) {
        mpw_u8(w, (uint8_t)(0x80u | n));
    } else {
        mpw_len_hdr(w, 0, 0xDE, 0xDF, n);
    }
}

/* ============================================================================================== */
/* msgpack reader                                                                                 */
/* ============================================================================================== */

void fsb_mpr_init(fsb_mpr *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->error = false;
}

/* Read an n-byte big-endian unsigned value; false (and error) if the input ends first. */
static bool mpr_be(fsb_mpr *r, unsigned n, uint64_t *out)
{
    uint64_t v = 0;
    unsigned i;
    if (n > r->len - r->pos) {
        r->error = true;
        return false;
    }
    for (i = 0; i < n; i++) {
        v = (v << 8) | r->buf[r->pos++];
    }
    *out = v;
    return true;
}

/* Claim `len` bytes of str / bin / ext data. */
static bool mpr_data(fsb_mpr *r, fsb_mp_token *t, uint64_t len)
{
    if (len > r->len - r->pos) {
        r->error = true;
        return false;
    }
    t->ptr = r->buf + r->pos;
    t->len = (uint32_t)len;
    r->pos += (size_t)len;
    return true;
}

/* Sign-extend the low `bits` bits of v. */
static int64_t sign_extend(uint64_t v, unsigned bits)
{
    uint64_t sign = (uint64_t)1 << (bits - 1u);
    if (bits == 64u) {
        /* two's complement reinterpretation without implementation-defined conversion */
        return (v & sign) ? -(int64_t)(~v) - 1 : (int64_t)v;
    }
    v &= (sign << 1) - 1u;
    return (v & sign) ? (int64_t)v - (int64_t)(sign << 1) : (int64_t)v;
}

static double f64_from_bits(uint64_t bits)
{
#if DBL_MANT_DIG >= 53
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
#else
    /* 32-bit double: narrow binary64 to binary32 by hand (truncating the mantissa; values out of
     * range become 0 or infinity). No libm needed. */
    uint32_t sign = (uint32_t)(bits >> 63) << 31;
    int32_t exp = (int32_t)((bits >> 52) & 0x7FFu);
    uint64_t mant = bits & 0xFFFFFFFFFFFFFull;
    uint32_t out;
    float f;
    if (exp == 0x7FF) {
        out = sign | 0x7F800000u | (mant ? 0x400000u : 0u);
    } else if (exp == 0) {
        out = sign;
    } else {
        int32_t e = exp - 1023 + 127;
        if (e >= 0xFF) {
            out = sign | 0x7F800000u;
        } else if (e <= 0) {
            out = sign;
        } else {
            out = sign | ((uint32_t)e << 23) | (uint32_t)(mant >> 29);
        }
    }
    memcpy(&f, &out, sizeof f);
    return (double)f;
#endif
}

bool fsb_mpr_next(fsb_mpr *r, fsb_mp_token *t)
{
    uint8_t c;
    uint64_t v;
    if (r->error || r->pos >= r->len) {
        return false;
    }
    c = r->buf[r->pos++];
    t->ptr = NULL;
    t->len = 0;
    t->ext_type = 0;
    if (c <= 0x7Fu) {
        t->type = FSB_MP_UINT;
        t->v.u = c;
        return true;
    }
    if (c >= 0xE0u) {
        t->type = FSB_MP_INT;
        t->v.i = (int64_t)c - 256;
        return true;
    }
    if (c <= 0x8Fu) {
        t->type = FSB_MP_MAP;
        t->v.n = c & 0x0Fu;
        return true;
    }
    if (c <= 0x9Fu) {
        t->type = FSB_MP_ARRAY;
        t->v.n = c & 0x0Fu;
        return true;
    }
    if (c <= 0xBFu) {
        t->type = FSB_MP_STR;
        return mpr_data(r, t, c & 0x1Fu);
    }
    switch (c) {
    case 0xC0:
        t->type = FSB_MP_NIL;
        return true;
    case 0xC2:
    case 0xC3:
        t->type = FSB_MP_BOOL;
        t->v.b = (c == 0xC3);
        return true;
    case 0xC4:
    case 0xC5:
    case 0xC6:
        t->type = FSB_MP_BIN;
        return mpr_be(r, 1u << (c - 0xC4u), &v) && mpr_data(r, t, v);
    case 0xC7:
    case 0xC8:
    case 0xC9: {
        uint64_t ty;
        t->type = FSB_MP_EXT;
        if (!mpr_be(r, 1u << (c - 0xC7u), &v) || !mpr_be(r, 1, &ty)) {
            return false;
        }
        t->ext_type = (int8_t)sign_extend(ty, 8);
        return mpr_data(r, t, v);
    }
    case 0xCA: {
        uint32_t bits;
        if (!mpr_be(r, 4, &v)) {
            return false;
        }
        bits = (uint32_t)v;
        t->type = FSB_MP_F32;
        memcpy(&t->v.f32, &bits, sizeof bits);
        return true;
    }
    case 0xCB:
        if (!mpr_be(r, 8, &v)) {
            return false;
        }
        t->type = FSB_MP_F64;
        t->v.f64 = f64_from_bits(v);
        return true;
    case 0xCC:
    case 0xCD:
    case 0xCE:
    case 0xCF:
        t->type = FSB_MP_UINT;
        return mpr_be(r, 1u << (c - 0xCCu), &t->v.u);
    case 0xD0:
    case 0xD1:
    case 0xD2:
    case 0xD3: {
        unsigned n = 1u << (c - 0xD0u);
        if (!mpr_be(r, n, &v)) {
            return false;
        }
        t->type = FSB_MP_INT;
        t->v.i = sign_extend(v, 8u * n);
        return true;
    }
    case 0xD4:
    case 0xD5:
    case 0xD6:
    case 0xD7:
    case 0xD8: {
        uint64_t ty;
        t->type = FSB_MP_EXT;
        if (!mpr_be(r, 1, &ty)) {
            return false;
        }
        t->ext_type = (int8_t)sign_extend(ty, 8);
        return mpr_data(r, t, (uint64_t)1 << (c - 0xD4u));
    }
    case 0xD9:
    case 0xDA:
    case 0xDB:
        t->type = FSB_MP_STR;
        return mpr_be(r, 1u << (c - 0xD9u), &v) && mpr_data(r, t, v);
    case 0xDC:
    case 0xDD:
        t->type = FSB_MP_ARRAY;
        if (!mpr_be(r, 2u << (c - 0xDCu), &v)) {
            return false;
        }
        t->v.n = (uint32_t)v;
        return true;
    case 0xDE:
    case 0xDF:
        t->type = FSB_MP_MAP;
        if (!mpr_be(r, 2u << (c - 0xDEu), &v)) {
            return false;
        }
        t->v.n = (uint32_t)v;
        return true;
    default: /* 0xC1: never used */
        r->error = true;
        return false;
    }
}

bool fsb_mpr_skip(fsb_mpr *r)
{
    /* Count the values still owed instead of recursing: a container adds its children. A hostile
     * count cannot run long, because every value takes at least one byte of the input. */
    uint64_t pending = 1;
    fsb_mp_token t;
    while (pending > 0) {
        if (!fsb_mpr_next(r, &t)) {
            r->error = true;
            return false;
        }
        pending--;
        if (t.type == FSB_MP_ARRAY) {
            pending += t.v.n;
        } else if (t.type == FSB_MP_MAP) {
            pending += 2u * (uint64_t)t.v.n;
        }
    }
    return true;
}

/* Skip what a container token announced (after its header was read). */
static bool mpr_skip_children(fsb_mpr *r, const fsb_mp_token *t)
{
    uint64_t n = 0, i;
    if (t->type == FSB_MP_ARRAY) {
        n = t->v.n;
    } else if (t->type == FSB_MP_MAP) {
        n = 2u * (uint64_t)t->v.n;
    }
    for (i = 0; i < n; i++) {
        if (!fsb_mpr_skip(r)) {
            return false;
        }
    }
    return true;
}

/* Read one value where a scalar is expected. A container in its place is skipped whole (the token
 * then says ARRAY / MAP, so the caller's type check refuses it): unknown shapes never derail. */
static bool mpr_scalar(fsb_mpr *r, fsb_mp_token *t)
{
    return fsb_mpr_next(r, t) && mpr_skip_children(r, t);
}

bool fsb_mp_as_i64(const fsb_mp_token *t, int64_t *out)
{
    if (t->type == FSB_MP_INT) {
        *out = t->v.i;
        return true;
    }
    if (t->type == FSB_MP_UINT && t->v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)t->v.u;
        return true;
    }
    return false;
}

bool fsb_mp_as_double(const fsb_mp_token *t, double *out)
{
    switch (t->type) {
    case FSB_MP_INT:
        *out = (double)t->v.i;
        return true;
    case FSB_MP_UINT:
        *out = (double)t->v.u;
        return true;
    case FSB_MP_F32:
        *out = (double)t->v.f32;
        return true;
    case FSB_MP_F64:
        *out = t->v.f64;
        return true;
    default:
        return false;
    }
}

bool fsb_mp_str_eq(const fsb_mp_token *t, const char *s)
{
    size_t n = strlen(s);
    return t->type == FSB_MP_STR && t->len == n && memcmp(t->ptr, s, n) == 0;
}

bool fsb_mp_str_copy(const fsb_mp_token *t, char *dst, size_t cap)
{
    size_t n;
    if (cap == 0) {
        return false;
    }
    if (t->type != FSB_MP_STR) {
        dst[0] = '\0';
        return false;
    }
    n = t->len < cap - 1u ? t->len : cap - 1u;
    memcpy(dst, t->ptr, n);
    dst[n] = '\0';
    return n == t->len;
}

/* ============================================================================================== */
/* Envelope                                                                                       */
/* ============================================================================================== */

static const char *const ENVELOPE_KEYS[6] = {"v", "topic", "seq", "t_ns", "src", "payload"};

/* Characters in a UTF-8 string (the emulator's limits count characters, not bytes). */
static size_t utf8_chars(const uint8_t *s, size_t len)
{
    size_t i, n = 0;
    for (i = 0; i < len; i++) {
        if ((s[i] & 0xC0u) != 0x80u) {
            n++;
        }
    }
    return n;
}

static bool nonneg_i63(const fsb_mp_token *t, uint64_t *out)
{
    int64_t v;
    if (!fsb_mp_as_i64(t, &v) || v < 0) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

int fsb_envelope_decode(const uint8_t *msg, size_t len, fsb_envelope *env)
{
    fsb_mpr r;
    fsb_mp_token t;
    unsigned seen = 0, i, k;
    fsb_mpr_init(&r, msg, len);
    memset(env, 0, sizeof *env);
    if (!fsb_mpr_next(&r, &t) || t.type != FSB_MP_MAP || t.v.n != 6u) {
        return FSB_ERR_CODEC; /* exactly the six keys, no more, no fewer */
    }
    for (i = 0; i < 6u; i++) {
        if (!fsb_mpr_next(&r, &t) || t.type != FSB_MP_STR) {
            return FSB_ERR_CODEC;
        }
        for (k = 0; k < 6u && !fsb_mp_str_eq(&t, ENVELOPE_KEYS[k]); k++) {
        }
        if (k == 6u || (seen & (1u << k))) {
            return FSB_ERR_CODEC; /* unknown or repeated key */
        }
        seen |= 1u << k;
        if (k == 5u) { /* payload: remember where the map is, check it is well formed */
            size_t start = r.pos;
            if (!fsb_mpr_next(&r, &t) || t.type != FSB_MP_MAP) {
                return FSB_ERR_CODEC;
            }
            r.pos = start;
            if (!fsb_mpr_skip(&r)) {
                return FSB_ERR_CODEC;
            }
            env->payload = msg + start;
            env->payload_len = r.pos - start;
            continue;
        }
        if (!mpr_scalar(&r, &t)) {
            return FSB_ERR_CODEC;
        }
        switch (k) {
        case 0:
            if (!fsb_mp_as_i64(&t, &env->v)) {
                return FSB_ERR_CODEC;
            }
            break;
        case 1:
            if (t.type != FSB_MP_STR || t.len == 0 || utf8_chars(t.ptr, t.len) > 128u) {
                return FSB_ERR_CODEC;
            }
            env->topic = (const char *)t.ptr;
            env->topic_len = t.len;
            break;
        case 2:
            if (!nonneg_i63(&t, &env->seq)) {
                return FSB_ERR_CODEC;
            }
            break;
        case 3:
            if (!nonneg_i63(&t, &env->t_ns)) {
                return FSB_ERR_CODEC;
            }
            break;
        default: /* 4: src */
            if (t.type != FSB_MP_STR || utf8_chars(t.ptr, t.len) > 128u) {
                return FSB_ERR_CODEC;
            }
            env->src = (const char *)t.ptr;
            env->src_len = t.len;
            break;
        }
    }
    if (r.pos != len) {
        return FSB_ERR_CODEC; /* exactly one object, no trailing bytes */
    }
    return env->v == FSB_PROTOCOL_VERSION ? FSB_OK : FSB_ERR_VERSION;
}

void fsb_envelope_begin(fsb_mpw *w, const char *topic, uint64_t seq, uint64_t t_ns, const char *src)
{
    /* the emulator's key order (docs/protocol.md sec. 2): topic first, so that a ZeroMQ subscription
       (a byte prefix) can name a topic; a decoder accepts any order */
    fsb_mpw_map(w, 6);
    fsb_mpw_str(w, "topic");
    fsb_mpw_str(w, topic);
    fsb_mpw_str(w, "v");
    fsb_mpw_uint(w, FSB_PROTOCOL_VERSION);
    fsb_mpw_str(w, "seq");
    fsb_mpw_uint(w, seq);
    fsb_mpw_str(w, "t_ns");
    fsb_mpw_uint(w, t_ns);
    fsb_mpw_str(w, "src");
    fsb_mpw_str(w, src);
    fsb_mpw_str(w, "payload");
}

bool fsb_envelope_topic_is(const fsb_envelope *env, const char *topic)
{
    size_t n = strlen(topic);
    return env->topic_len == n && memcmp(env->topic, topic, n) == 0;
}

/* ============================================================================================== */
/* The board                                                                                      */
/* ============================================================================================== */

#define NS_PER_S 1000000000.0

static const char *const DEFAULT_LEVELS[FSB_POLICY_LEVEL_COUNT] = FSB_POLICY_LEVELS;

static const struct {
    const char *name;
    fsb_accel_state state;
} STATE_NAMES[] = {
    {"off", FSB_ACC_OFF},   {"booting", FSB_ACC_BOOTING},     {"idle", FSB_ACC_IDLE},
    {"busy", FSB_ACC_BUSY}, {"throttled", FSB_ACC_THROTTLED}, {"hung", FSB_ACC_HUNG},
    {"latched_up", FSB_ACC_LATCHED_UP}, {"failed", FSB_ACC_FAILED},
};

void fsb_config_default(fsb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
#ifdef FLATSAT_NAIVE
    cfg->name = "c-stub-naive";
#else
    cfg->name = "c-stub";
#endif
    cfg->version = FSB_VERSION;
    /* the one reference policy (fsb_policy.h, generated from emulator/reference_policy.py) */
    cfg->rail = FSB_POLICY_RAIL;
    cfg->period_s = FSB_POLICY_PERIOD_S;
    cfg->soc_off = FSB_POLICY_SOC_OFF;
    cfg->soc_on = FSB_POLICY_SOC_ON;
    cfg->soc_low = FSB_POLICY_SOC_LOW;
    cfg->soc_eclipse = FSB_POLICY_SOC_ECLIPSE;
    /* Bus thresholds: 0.4 V above the EPS's own payload shed of the 8S suncatcher-proto pack; a board on
     * another bus sets its own (main_posix: --bus-off-v / --bus-on-v). */
    cfg->bus_off_v = FSB_POLICY_BUS_OFF_V;
    cfg->bus_on_v = FSB_POLICY_BUS_ON_V;
    cfg->temp_high_degc = FSB_POLICY_TEMP_HIGH_DEGC;
    cfg->temp_low_degc = FSB_POLICY_TEMP_LOW_DEGC;
    cfg->temp_restart_degc = FSB_POLICY_TEMP_RESTART_DEGC;
    cfg->queue_target = FSB_POLICY_QUEUE_TARGET;
    cfg->job_size = FSB_POLICY_JOB_SIZE;
    cfg->request_timeout_ms = 5000;
    cfg->link_lost_ms = 60000;
}

static void copy_name_n(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n > cap - 1u) {
        n = cap - 1u;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void copy_name(char *dst, const char *src)
{
    copy_name_n(dst, FSB_NAME_MAX, src);
}

void fsb_board_init(fsb_board *b, const fsb_config *cfg, const fsb_io *io)
{
    unsigned i;
    memset(b, 0, sizeof *b);
    if (cfg != NULL) {
        b->cfg = *cfg;
    } else {
        fsb_config_default(&b->cfg);
    }
    b->io = *io;
    fsb_deframer_init(&b->rx, b->rx_buf, sizeof b->rx_buf);
    for (i = 0; i < FSB_POLICY_LEVEL_COUNT && i < FSB_MAX_LEVELS; i++) {
        copy_name(b->levels[i], DEFAULT_LEVELS[i]);
    }
    b->n_levels = (uint8_t)i;
    copy_name(b->want_level, FSB_POLICY_START_LEVEL); /* the board's power-on level */
    b->next_seed = 1;
    b->waiting_t_ns = -1;
    b->last_turn_ns = -1;
    b->state = FSB_ACC_UNKNOWN;
    b->last_rx_ms = b->last_ping_ms = b->io.millis(b->io.ctx);
}

static void say(fsb_board *b, const char *text)
{
    if (b->io.log != NULL) {
        b->io.log(b->io.ctx, b->t_ns, text);
    }
}

/* ---- received messages ------------------------------------------------------------------------ */

/* Open a payload map; *n is its pair count. */
static bool payload_map(fsb_mpr *r, const fsb_envelope *env, uint32_t *n)
{
    fsb_mp_token t;
    fsb_mpr_init(r, env->payload, env->payload_len);
    if (!fsb_mpr_next(r, &t) || t.type != FSB_MP_MAP) {
        return false;
    }
    *n = t.v.n;
    return true;
}

/* Read the next key of a map. Keys are str on this protocol; anything else ends the walk of the map
 * (its value is not read, so the caller must stop using this reader for the map). */
static bool next_key(fsb_mpr *r, fsb_mp_token *key)
{
    return mpr_scalar(r, key) && key->type == FSB_MP_STR;
}

static void on_eps(fsb_board *b, const fsb_envelope *env)
{
    fsb_mpr r;
    fsb_mp_token k, t;
    uint32_t n, i, j, m, items;
    if (!payload_map(&r, env, &n)) {
        return;
    }
    for (i = 0; i < n && next_key(&r, &k); i++) {
        if (fsb_mp_str_eq(&k, "bus_v")) {
            if (mpr_scalar(&r, &t)) {
                (void)fsb_mp_as_double(&t, &b->bus_v);
            }
        } else if (fsb_mp_str_eq(&k, "soc_est")) {
            if (mpr_scalar(&r, &t)) {
                (void)fsb_mp_as_double(&t, &b->soc);
            }
        } else if (fsb_mp_str_eq(&k, "rails")) {
            if (!fsb_mpr_next(&r, &t)) {
                return;
            }
            if (t.type != FSB_MP_ARRAY) {
                (void)mpr_skip_children(&r, &t);
                continue;
            }
            items = t.v.n;
            for (j = 0; j < items; j++) {
                /* a rail's keys come in any order: collect, then keep it if the name is ours */
                bool mine = false, on = false, latched = false;
                if (!fsb_mpr_next(&r, &t)) {
                    return;
                }
                if (t.type != FSB_MP_MAP) {
                    (void)mpr_skip_children(&r, &t);
                    continue;
                }
                m = t.v.n;
                while (m-- > 0 && next_key(&r, &k)) {
                    if (!mpr_scalar(&r, &t)) {
                        return;
                    }
                    if (fsb_mp_str_eq(&k, "name")) {
                        mine = fsb_mp_str_eq(&t, b->cfg.rail);
                    } else if (fsb_mp_str_eq(&k, "on") && t.type == FSB_MP_BOOL) {
                        on = t.v.b;
                    } else if (fsb_mp_str_eq(&k, "latched") && t.type == FSB_MP_BOOL) {
                        latched = t.v.b;
                    }
                }
                if (mine) {
                    b->rail_seen = true;
                    b->rail_on = on;
                    b->rail_latched = latched;
                }
            }
        } else if (!fsb_mpr_skip(&r)) {
            return;
        }
    }
    b->have_eps = true;
}

static fsb_accel_state parse_state(const fsb_mp_token *t)
{
    size_t i;
    for (i = 0; i < sizeof STATE_NAMES / sizeof STATE_NAMES[0]; i++) {
        if (fsb_mp_str_eq(t, STATE_NAMES[i].name)) {
            return STATE_NAMES[i].state;
        }
    }
    return FSB_ACC_UNKNOWN;
}

static void on_accel_status(fsb_board *b, const fsb_envelope *env)
{
    fsb_mpr r;
    fsb_mp_token k, t;
    uint32_t n, i;
    if (!payload_map(&r, env, &n)) {
        return;
    }
    for (i = 0; i < n && next_key(&r, &k); i++) {
        int64_t q;
        if (!mpr_scalar(&r, &t)) {
            return;
        }
        if (fsb_mp_str_eq(&k, "state")) {
            b->state = parse_state(&t);
        } else if (fsb_mp_str_eq(&k, "die_temp_degc")) {
            (void)fsb_mp_as_double(&t, &b->die_temp_degc);
        } else if (fsb_mp_str_eq(&k, "throttle")) {
            b->throttled = t.type == FSB_MP_STR && !fsb_mp_str_eq(&t, "none");
        } else if (fsb_mp_str_eq(&k, "level")) {
            (void)fsb_mp_str_copy(&t, b->level, sizeof b->level);
        } else if (fsb_mp_str_eq(&k, "queue_len") && fsb_mp_as_i64(&t, &q)) {
            /* clamped: a bad value must neither wrap the int32 nor ask for a flood of jobs */
            b->queue_len = q < 0 ? 0 : (q > 1000 ? 1000 : (int32_t)q);
        }
    }
    b->have_acc = true;
}

static void on_sun(fsb_board *b, const fsb_envelope *env)
{
    fsb_mpr r;
    fsb_mp_token k, t;
    uint32_t n, i;
    if (!payload_map(&r, env, &n)) {
        return;
    }
    for (i = 0; i < n && next_key(&r, &k); i++) {
        if (!mpr_scalar(&r, &t)) {
            return;
        }
        if (fsb_mp_str_eq(&k, "eclipse") && t.type == FSB_MP_BOOL) {
            b->eclipse = t.v.b;
        }
    }
}

static void on_waiting(fsb_board *b, const fsb_envelope *env)
{
    fsb_mpr r;
    fsb_mp_token k, t;
    uint32_t n, i;
    int64_t v;
    if (!payload_map(&r, env, &n)) {
        return;
    }
    for (i = 0; i < n && next_key(&r, &k); i++) {
        if (!mpr_scalar(&r, &t)) {
            return;
        }
        if (fsb_mp_str_eq(&k, "t_ns") && fsb_mp_as_i64(&t, &v) && v > b->waiting_t_ns) {
            b->waiting_t_ns = v;
        }
    }
}

/* A finished job with a result: recompute it from its seed and compare the digest (the reference
 * controller's check, firmware_stubs/jobcheck.py), and queue the verdict for the next turn. A result
 * without a digest is accepted, as the reference does; a kind the recipe does not know is not judged. */
static void check_job(fsb_board *b, int64_t id, uint64_t seed, const char *kind, const char *digest,
                      size_t digest_len, bool has_digest)
{
#ifdef FLATSAT_NAIVE
    (void)b, (void)id, (void)seed, (void)kind, (void)digest, (void)digest_len, (void)has_digest;
#else
    struct fsb_verdict *v;
    uint32_t salt = fsb_job_salt(kind, strlen(kind));
    bool good = true;
    if (salt == 0 || id < 0) {
        return;
    }
    if (has_digest) {
        good = fsb_job_digest_matches(seed, salt, digest, digest_len);
        b->stats.jobs_checked++;
    }
    if (!good) {
        b->stats.sdc_detected++;
        say(b, "job result corrupted (digest mismatch): reject it and run the job again");
    }
    if (b->n_verdicts >= FSB_MAX_VERDICTS) {
        b->stats.verdicts_dropped++;
        return;
    }
    v = &b->verdicts[b->n_verdicts++];
    v->id = id;
    v->seed = seed;
    copy_name_n(v->kind, sizeof v->kind, kind);
    v->ok = good;
#endif
}

static void on_accel_event(fsb_board *b, const fsb_envelope *env)
{
    fsb_mpr r;
    fsb_mp_token k, t;
    uint32_t n, i;
    bool is_power = fsb_envelope_topic_is(env, "accel.power");
    bool is_state = fsb_envelope_topic_is(env, "accel.state");
    bool is_done = fsb_envelope_topic_is(env, "accel.job.done");
    bool on = true, ok = false, has_id = false, has_seed = false, has_digest = false;
    char reason[FSB_NAME_MAX] = "";
    char kind[16] = "";
    char digest[FSB_DIGEST_HEX_LEN + 1] = "";
    int64_t id = -1, seed = -1;
    if (!payload_map(&r, env, &n)) {
        return;
    }
    for (i = 0; i < n && next_key(&r, &k); i++) {
        if (!mpr_scalar(&r, &t)) {
            return;
        }
        if (is_power && fsb_mp_str_eq(&k, "on") && t.type == FSB_MP_BOOL) {
            on = t.v.b;
        } else if (is_power && fsb_mp_str_eq(&k, "reason")) {
            (void)fsb_mp_str_copy(&t, reason, sizeof reason);
        } else if (is_state && fsb_mp_str_eq(&k, "state")) {
            /* events are newer than the last accel.status: a hang is seen at the next turn even
             * when the status telemetry is slow */
            b->state = parse_state(&t);
        } else if (is_done && fsb_mp_str_eq(&k, "ok") && t.type == FSB_MP_BOOL) {
            ok = t.v.b;
        } else if (is_done && fsb_mp_str_eq(&k, "id")) {
            has_id = fsb_mp_as_i64(&t, &id) && id >= 0;
        } else if (is_done && fsb_mp_str_eq(&k, "seed")) {
            has_seed = fsb_mp_as_i64(&t, &seed) && seed >= 0;
        } else if (is_done && fsb_mp_str_eq(&k, "kind")) {
            (void)fsb_mp_str_copy(&t, kind, sizeof kind);
        } else if (is_done && fsb_mp_str_eq(&k, "digest") && t.type == FSB_MP_STR) {
            /* a digest of another length is kept empty: it fails the check */
            has_digest = true;
            if (t.len == FSB_DIGEST_HEX_LEN) {
                (void)fsb_mp_str_copy(&t, digest, sizeof digest);
            }
        }
    }
    if (is_done) {
        if (ok) {
            b->stats.jobs_done++;
            if (has_id && has_seed) {
                check_job(b, id, (uint64_t)seed, kind, digest, strlen(digest), has_digest);
            }
        } else {
            b->stats.jobs_lost++;
        }
    }
    if (is_power && !on) {
        if (strcmp(reason, "thermal_shutdown") == 0) {
            b->shutdown_thermal = true;
            say(b, "thermal shutdown reported");
        } else if (strcmp(reason, "latchup") == 0) {
            /* The reference controller drops a pending power cycle here. But the board may have cut
             * the rail itself (seeing latched_up), and then the supply loss also reads "latchup":
             * keep the cycle pending, so the next turn switches the rail back on (harmless when
             * the limiter already restored it). */
            say(b, "latch-up: the supply was cut");
        }
    }
}

static void on_reply(fsb_board *b, const fsb_envelope *env)
{
    const char *pending_topic = b->pending_topic;
    bool is_ping;
    fsb_mpr r;
    fsb_mp_token k, t;
    uint32_t n, i;
    int64_t id = -1;
    bool ok = false, has_ok = false;
    size_t data_pos = 0, error_pos = 0;
    if (!payload_map(&r, env, &n)) {
        return;
    }
    /* first pass: id and ok, and where data / error are (the keys may come in any order) */
    for (i = 0; i < n && next_key(&r, &k); i++) {
        if (fsb_mp_str_eq(&k, "data")) {
            data_pos = r.pos;
            if (!fsb_mpr_skip(&r)) {
                return;
            }
            continue;
        }
        if (fsb_mp_str_eq(&k, "error")) {
            error_pos = r.pos;
            if (!fsb_mpr_skip(&r)) {
                return;
            }
            continue;
        }
        if (!mpr_scalar(&r, &t)) {
            return;
        }
        if (fsb_mp_str_eq(&k, "id")) {
            (void)fsb_mp_as_i64(&t, &id);
        } else if (fsb_mp_str_eq(&k, "ok") && t.type == FSB_MP_BOOL) {
            ok = t.v.b;
            has_ok = true;
        }
    }
    /* One request is outstanding at a time on this link, so a reply with id 0 (the emulator could
     * not decode a request) is the answer to it. */
    if (b->pending == 0 || !has_ok || (id != (int64_t)b->pending && id != 0)) {
        b->stats.stale_replies++;
        return;
    }
    b->reply_seen = true;
    b->reply_ok = ok;
    if (ok) {
        b->stats.acked++;
    } else {
        b->stats.refused++;
    }
    if (!ok && error_pos != 0) {
        r.pos = error_pos;
        if (fsb_mpr_next(&r, &t) && t.type == FSB_MP_MAP) {
            n = t.v.n;
            for (i = 0; i < n && next_key(&r, &k); i++) {
                if (fsb_mp_str_eq(&k, "valid")) {
                    uint32_t items, j;
                    if (!fsb_mpr_next(&r, &t)) {
                        return;
                    }
                    if (t.type != FSB_MP_ARRAY) {
                        (void)mpr_skip_children(&r, &t);
                        continue;
                    }
                    items = t.v.n;
                    for (j = 0; j < items; j++) {
                        if (!mpr_scalar(&r, &t)) {
                            return;
                        }
                        if (t.type == FSB_MP_STR && b->n_err_valid < FSB_MAX_LEVELS &&
                            fsb_mp_str_copy(&t, b->err_valid[b->n_err_valid], FSB_NAME_MAX)) {
                            b->n_err_valid++;
                        }
                    }
                    continue;
                }
                if (!mpr_scalar(&r, &t)) {
                    return;
                }
                if (fsb_mp_str_eq(&k, "field")) {
                    (void)fsb_mp_str_copy(&t, b->err_field, sizeof b->err_field);
                }
            }
        }
    }
    is_ping = strcmp(pending_topic, "ping") == 0;
    if (ok && data_pos != 0 && (is_ping || strcmp(pending_topic, "board.step") == 0)) {
        /* ping: {t_ns}, the clock now; board.step: {limit_ns}, where the clock may run to */
        r.pos = data_pos;
        if (fsb_mpr_next(&r, &t) && t.type == FSB_MP_MAP) {
            n = t.v.n;
            for (i = 0; i < n && next_key(&r, &k); i++) {
                int64_t v;
                if (!mpr_scalar(&r, &t)) {
                    return;
                }
                if (!fsb_mp_as_i64(&t, &v) || v < 0) {
                    continue;
                }
                if (is_ping && fsb_mp_str_eq(&k, "t_ns")) {
                    b->ping_t_ns = v;
                } else if (!is_ping && fsb_mp_str_eq(&k, "limit_ns")) {
                    b->step_limit_ns = (uint64_t)v;
                }
            }
        }
    }
    if (ok && data_pos != 0 && strcmp(pending_topic, "board.hello") == 0) {
        r.pos = data_pos;
        if (fsb_mpr_next(&r, &t) && t.type == FSB_MP_MAP) {
            n = t.v.n;
            for (i = 0; i < n && next_key(&r, &k); i++) {
                int64_t v;
                if (!mpr_scalar(&r, &t)) {
                    return;
                }
                if (fsb_mp_str_eq(&k, "protocol_version") && fsb_mp_as_i64(&t, &v)) {
                    b->hello_protocol = v;
                } else if (fsb_mp_str_eq(&k, "t_ns") && fsb_mp_as_i64(&t, &v) && v >= 0) {
                    b->hello_t_ns = (uint64_t)v;
                } else if (fsb_mp_str_eq(&k, "mode")) {
                    (void)fsb_mp_str_copy(&t, b->hello_mode, sizeof b->hello_mode);
                } else if (fsb_mp_str_eq(&k, "lockstep_source")) {
                    (void)fsb_mp_str_copy(&t, b->hello_source, sizeof b->hello_source);
                } else if (fsb_mp_str_eq(&k, "waiting") && t.type == FSB_MP_BOOL) {
                    b->hello_waiting = t.v.b;
                }
            }
        }
    }
}

static void handle_message(fsb_board *b, const uint8_t *msg, size_t len)
{
    fsb_envelope env;
    if (fsb_envelope_decode(msg, len, &env) != FSB_OK) {
        b->stats.decode_errors++;
        return;
    }
    if (env.t_ns > b->t_ns) {
        b->t_ns = env.t_ns;
    }
    if (fsb_envelope_topic_is(&env, "reply")) {
        on_reply(b, &env);
    } else if (fsb_envelope_topic_is(&env, "sim.waiting")) {
        on_waiting(b, &env);
    } else if (fsb_envelope_topic_is(&env, "eps.telemetry")) {
        b->stats.telemetry++;
        on_eps(b, &env);
    } else if (fsb_envelope_topic_is(&env, "accel.status")) {
        b->stats.telemetry++;
        on_accel_status(b, &env);
    } else if (fsb_envelope_topic_is(&env, "adcs.sun")) {
        b->stats.telemetry++;
        on_sun(b, &env);
    } else if (fsb_envelope_topic_is(&env, "accel.power") || fsb_envelope_topic_is(&env, "accel.state") ||
               fsb_envelope_topic_is(&env, "accel.job.done")) {
        b->stats.events++;
        on_accel_event(b, &env);
    } else if (fsb_envelope_topic_is(&env, "thermal.telemetry") || fsb_envelope_topic_is(&env, "sim.clock")) {
        b->stats.telemetry++; /* read but not needed: the die temperature comes with accel.status */
    } else {
        b->stats.events++; /* any other topic: an event this board does not act on */
    }
}

static void idle(fsb_board *b)
{
    if (b->io.idle != NULL) {
        b->io.idle(b->io.ctx);
    }
}

/* Read what has arrived (at most a bounded number of bytes, so time-outs are checked); stops early
 * once the pending request's reply is in. */
static int pump(fsb_board *b)
{
    int budget = 512;
    while (budget-- > 0) {
        const uint8_t *msg;
        size_t n;
        int c = b->io.read_byte(b->io.ctx);
        if (c == FSB_IO_CLOSED) {
            return FSB_ERR_CLOSED;
        }
        if (c < 0) {
            return FSB_OK;
        }
        n = fsb_deframer_feed(&b->rx, (uint8_t)c, &msg);
        if (n > 0) {
            b->last_rx_ms = b->io.millis(b->io.ctx); /* a good frame: the emulator is there */
            handle_message(b, msg, n);
            if (b->pending != 0 && b->reply_seen) {
                return FSB_OK;
            }
        }
    }
    return FSB_OK;
}

/* ---- requests --------------------------------------------------------------------------------- */

/* Append s at dst[n], truncating, always NUL-terminated; returns the new length (no snprintf: it
 * costs kilobytes of flash on a small MCU). */
static size_t append(char *dst, size_t cap, size_t n, const char *s)
{
    while (*s != '\0' && n + 1u < cap) {
        dst[n++] = *s++;
    }
    dst[n] = '\0';
    return n;
}

static fsb_mpw *begin_request(fsb_board *b, const char *topic)
{
    fsb_mpw_init(&b->w, b->tx_msg, sizeof b->tx_msg);
    b->seq++; /* starts at 1: id 0 is what the emulator quotes for undecodable requests */
    fsb_envelope_begin(&b->w, topic, b->seq, b->t_ns, b->cfg.name);
    return &b->w;
}

/* A request that a second copy cannot hurt (docs/protocol.md sec. 3.1): sent again, same seq, when
 * its reply does not come. Not a job submission (two jobs) nor a board.step (poll checks the clock). */
static bool repeatable(const char *topic)
{
    static const char *const safe[] = {"ping", "board.hello", "eps.rail.set", "eps.rail.reset",
                                       "accel.dvfs.set", "accel.reset"};
    size_t i;
    for (i = 0; i < sizeof safe / sizeof safe[0]; i++) {
        if (strcmp(topic, safe[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The wait after the k-th copy (0-based): the time-out, doubled each time, at most 8 times it. */
static uint32_t backoff_ms(const fsb_board *b, uint32_t k)
{
    uint32_t wait = b->cfg.request_timeout_ms;
    while (k-- > 0 && wait < b->cfg.request_timeout_ms * FSB_BACKOFF_MAX) {
        wait *= 2u;
    }
    return wait;
}

static int send_and_wait(fsb_board *b, const char *topic, size_t n);

/* Send the request written since begin_request and wait for its reply (reading everything else
 * that arrives meanwhile). FSB_OK, FSB_REFUSED, or an error. */
static int finish_request(fsb_board *b, const char *topic)
{
    size_t n;
    if (b->w.overflow) {
        return FSB_ERR_OVERFLOW;
    }
    n = fsb_frame_encode(b->tx_msg, b->w.len, b->tx_frame, sizeof b->tx_frame);
    if (n == 0) {
        return FSB_ERR_OVERFLOW;
    }
    return send_and_wait(b, topic, n);
}

/* Send the frame in tx_frame (n bytes, request id b->seq) and wait for its reply; a repeatable
 * request goes out again (the same frame: a late reply to either copy answers it) with a longer
 * wait each time, up to FSB_MAX_SENDS copies. */
static int send_and_wait(fsb_board *b, const char *topic, size_t n)
{
    uint32_t start, sends = 0;
    b->pending = b->seq;
    b->pending_topic = topic;
    b->reply_seen = false;
    b->reply_ok = false;
    b->err_field[0] = '\0';
    b->n_err_valid = 0;
    b->stats.requests++;
    if (!b->io.write_bytes(b->io.ctx, b->tx_frame, n)) {
        b->pending = 0;
        return FSB_ERR_CLOSED;
    }
    start = b->io.millis(b->io.ctx);
    while (!b->reply_seen) {
        int rc = pump(b);
        if (rc != FSB_OK) {
            b->pending = 0;
            return rc;
        }
        if (!b->reply_seen) {
            idle(b);
        }
        /* unsigned difference: correct across the wrap of a 32-bit tick */
        /* a hello is not backed off: the emulator may come up at any moment, and a runner waits for
         * the hello only so long (flatsat test --hello-timeout) */
        if (!b->reply_seen && (uint32_t)(b->io.millis(b->io.ctx) - start) >=
                                  backoff_ms(b, strcmp(topic, "board.hello") == 0 ? 0u : sends)) {
            b->stats.timeouts++;
            sends++;
            if (!repeatable(topic) || sends >= FSB_MAX_SENDS) {
                b->stats.lost++;
                b->pending = 0;
                return FSB_ERR_TIMEOUT;
            }
            b->stats.retries++;
            if (!b->io.write_bytes(b->io.ctx, b->tx_frame, n)) {
                b->pending = 0;
                return FSB_ERR_CLOSED;
            }
            start = b->io.millis(b->io.ctx);
        }
    }
    b->pending = 0;
    if (!b->reply_ok && b->io.log != NULL) {
        char line[96];
        size_t k = append(line, sizeof line, 0, "refused: ");
        k = append(line, sizeof line, k, topic);
        if (b->err_field[0] != '\0') {
            k = append(line, sizeof line, k, " (field ");
            k = append(line, sizeof line, k, b->err_field);
            (void)append(line, sizeof line, k, ")");
        }
        say(b, line);
    }
    return b->reply_ok ? FSB_OK : FSB_REFUSED;
}

static int rail_set(fsb_board *b, bool on)
{
    fsb_mpw *w = begin_request(b, "eps.rail.set");
    fsb_mpw_map(w, 2);
    fsb_mpw_str(w, "rail");
    fsb_mpw_str(w, b->cfg.rail);
    fsb_mpw_str(w, "on");
    fsb_mpw_bool(w, on);
    return finish_request(b, "eps.rail.set");
}

#ifndef FLATSAT_NAIVE /* the naive controller never recovers anything */
static int rail_reset(fsb_board *b)
{
    fsb_mpw *w = begin_request(b, "eps.rail.reset");
    fsb_mpw_map(w, 1);
    fsb_mpw_str(w, "rail");
    fsb_mpw_str(w, b->cfg.rail);
    return finish_request(b, "eps.rail.reset");
}

static int accel_reset(fsb_board *b)
{
    fsb_mpw_map(begin_request(b, "accel.reset"), 0);
    return finish_request(b, "accel.reset");
}
#endif

static int submit_job(fsb_board *b, const char *kind, uint64_t seed)
{
    int rc;
    fsb_mpw *w = begin_request(b, "accel.job.submit");
    fsb_mpw_map(w, 3);
    fsb_mpw_str(w, "kind");
    fsb_mpw_str(w, kind);
    fsb_mpw_str(w, "size");
    fsb_mpw_int(w, b->cfg.job_size);
    fsb_mpw_str(w, "seed");
    fsb_mpw_uint(w, seed);
    rc = finish_request(b, "accel.job.submit");
    if (rc == FSB_OK) {
        b->stats.jobs_submitted++;
    }
    return rc;
}

#ifndef FLATSAT_NAIVE
static int send_verdict(fsb_board *b, int64_t id, bool ok)
{
    fsb_mpw *w = begin_request(b, "accel.job.verdict");
    fsb_mpw_map(w, 2);
    fsb_mpw_str(w, "id");
    fsb_mpw_int(w, id);
    fsb_mpw_str(w, "ok");
    fsb_mpw_bool(w, ok);
    return finish_request(b, "accel.job.verdict");
}

/* Report every checked result, oldest first (the reference controller reads its events first), and
 * run a corrupted job again (same kind and seed: the emulator counts that as handled too). A verdict
 * that gets no reply is dropped and counted: one lost on the line must not hold up every later turn. */
static int report_verdicts(fsb_board *b)
{
    while (b->n_verdicts > 0) {
        struct fsb_verdict v = b->verdicts[0];
        int rc;
        memmove(&b->verdicts[0], &b->verdicts[1], (size_t)(b->n_verdicts - 1u) * sizeof b->verdicts[0]);
        b->n_verdicts--;
        rc = send_verdict(b, v.id, v.ok);
        if (rc < 0) {
            b->stats.verdicts_dropped++;
            return rc;
        }
        b->stats.verdicts++;
        if (!v.ok) {
            rc = submit_job(b, v.kind, v.seed);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return FSB_OK;
}
#endif

static int set_level(fsb_board *b, const char *level)
{
    int rc;
    fsb_mpw *w = begin_request(b, "accel.dvfs.set");
    fsb_mpw_map(w, 1);
    fsb_mpw_str(w, "level");
    fsb_mpw_str(w, level);
    rc = finish_request(b, "accel.dvfs.set");
    if (rc == FSB_REFUSED && strcmp(b->err_field, "payload.level") == 0 && b->n_err_valid > 0) {
        /* this satellite has another DVFS table: the refusal lists it, lowest first */
        uint8_t i;
        for (i = 0; i < b->n_err_valid; i++) {
            copy_name(b->levels[i], b->err_valid[i]);
        }
        b->n_levels = b->n_err_valid;
        say(b, "DVFS table learnt from the emulator's refusal");
    } else if (rc == FSB_OK) {
        copy_name(b->want_level, level);
        b->stats.dvfs_changes++;
        say(b, "DVFS level changed");
    }
    return rc;
}

static int say_hello(fsb_board *b)
{
    fsb_mpw *w = begin_request(b, "board.hello");
    fsb_mpw_map(w, 3);
    fsb_mpw_str(w, "name");
    fsb_mpw_str(w, b->cfg.name);
    fsb_mpw_str(w, "version");
    fsb_mpw_str(w, b->cfg.version);
    fsb_mpw_str(w, "capabilities");
    fsb_mpw_array(w, 1);
    fsb_mpw_str(w, "lockstep");
    return finish_request(b, "board.hello");
}

/* The turn's board.step; sent again after a loss with the same seq and envelope (step_seq), so a
 * late reply to the first copy answers the second. */
static int board_step(fsb_board *b)
{
    int rc;
    uint64_t newest = b->seq;
    fsb_mpw *w;
    if (b->step_seq == 0) {
        w = begin_request(b, "board.step");
        b->step_seq = b->seq;
        b->step_t_ns = b->t_ns;
    } else {
        b->seq = b->step_seq; /* for this request only: ids go on from the newest afterwards */
        fsb_mpw_init(&b->w, b->tx_msg, sizeof b->tx_msg);
        fsb_envelope_begin(&b->w, "board.step", b->step_seq, b->step_t_ns, b->cfg.name);
        w = &b->w;
    }
    fsb_mpw_map(w, 1);
    fsb_mpw_str(w, "duration_s");
    fsb_mpw_float64(w, b->cfg.period_s);
    rc = finish_request(b, "board.step");
    if (b->seq < newest) {
        b->seq = newest;
    }
    if (rc == FSB_OK) {
        b->stats.steps++;
        b->quiet_since_ms = b->io.millis(b->io.ctx);
        b->quiet_wait_ms = b->cfg.request_timeout_ms;
    }
    return rc;
}

static int ping(fsb_board *b)
{
    b->ping_t_ns = -1;
    b->stats.pings++;
    b->last_ping_ms = b->io.millis(b->io.ctx);
    fsb_mpw_map(begin_request(b, "ping"), 0);
    return finish_request(b, "ping");
}

/* ---- the controller --------------------------------------------------------------------------- */

#ifndef FLATSAT_NAIVE
static int level_index(const fsb_board *b, const char *level)
{
    uint8_t i;
    for (i = 0; i < b->n_levels; i++) {
        if (strcmp(b->levels[i], level) == 0) {
            return i;
        }
    }
    return b->n_levels / 2;
}
#endif

/* A link error ends the turn and goes up; a refusal ends the turn too (the reference controller's
 * checked requests raise), and is already counted. */
#define TRY(expr)                                                                                      \
    do {                                                                                               \
        int rc_ = (expr);                                                                              \
        if (rc_ != FSB_OK) {                                                                           \
            return rc_ < 0 ? rc_ : FSB_OK;                                                             \
        }                                                                                              \
    } while (0)

static bool accel_working(const fsb_board *b)
{
    return b->state == FSB_ACC_IDLE || b->state == FSB_ACC_BUSY || b->state == FSB_ACC_THROTTLED;
}

#ifdef FLATSAT_NAIVE
/* The naive controller (firmware_stubs/naive): flat out whatever the battery, the heat or the board's
 * health. Never checks a result, never resets a hung board, never power-cycles after a latch-up. */
static int control_turn(fsb_board *b)
{
    int32_t k;
    int rc;
    b->stats.turns++;
    if (!b->have_acc || !accel_working(b)) {
        return FSB_OK;
    }
    if (strcmp(b->level, "max") != 0) {
        rc = set_level(b, "max");
        if (rc < 0) {
            return rc;
        }
    }
    for (k = b->queue_len; k < 4; k++) {
        rc = submit_job(b, "inference", (uint64_t)b->next_seed);
        b->next_seed++;
        if (rc < 0) {
            return rc;
        }
    }
    return FSB_OK;
}
#else
/* One control turn: the reference controller's rules in its order (firmware_stubs/reference),
 * from what the board has seen. Returns FSB_OK or a link error. */
static int control_turn(fsb_board *b)
{
    const fsb_config *c = &b->cfg;
    bool starved, working;
    int want, top;
    int32_t k;

    b->stats.turns++;
    TRY(report_verdicts(b));
    if (!b->have_eps || !b->have_acc) {
        return FSB_OK; /* nothing to decide on yet */
    }

    /* -- power: a latched limiter, a pending power cycle, a latch-up -- */
    if (b->rail_seen && b->rail_latched) {
        say(b, "rail latched off by its limiter: reset it");
        TRY(rail_reset(b));
        b->stats.rail_resets++;
        b->rail_latched = false; /* until telemetry says otherwise: one reset per sighting */
    }
    if (b->power_cycle_pending) {
        say(b, "power cycle: rail back on");
        TRY(rail_set(b, true));
        b->power_cycle_pending = false;
        return FSB_OK;
    }
    if (b->state == FSB_ACC_LATCHED_UP) {
        say(b, "latch-up: power-cycling the rail");
        TRY(rail_set(b, false));
        b->power_cycle_pending = true;
        b->stats.power_cycles++;
        b->state = FSB_ACC_OFF; /* the cut ends it; do not cycle again on a stale status */
        return FSB_OK;
    }

    /* -- energy: shed the payload before the EPS has to, back on with hysteresis -- */
    if ((b->soc < c->soc_off || b->bus_v < c->bus_off_v) && !b->rail_off_by_me) {
        say(b, "battery low: payload rail off");
        TRY(rail_set(b, false));
        b->rail_off_by_me = true;
        b->stats.sheds++;
        return FSB_OK;
    }
    if (b->rail_off_by_me) {
        if (b->soc >= c->soc_on && b->bus_v >= c->bus_on_v && !b->eclipse) {
            say(b, "battery recovered: payload rail back on");
            TRY(rail_set(b, true));
            b->rail_off_by_me = false;
        }
        return FSB_OK;
    }

    /* -- board health -- */
    if (b->state == FSB_ACC_HUNG) {
        say(b, "board hung: reset");
        TRY(accel_reset(b));
        b->stats.hang_resets++;
        b->state = FSB_ACC_BOOTING; /* what the reset does; telemetry will confirm */
        return FSB_OK;
    }
    if (b->state == FSB_ACC_OFF && b->shutdown_thermal) {
        if (b->die_temp_degc < c->temp_restart_degc) {
            int rc = accel_reset(b);
            if (rc < 0) {
                return rc;
            }
            if (rc == FSB_OK) {
                b->shutdown_thermal = false;
                say(b, "die cooled after thermal shutdown: reset");
            }
        }
        return FSB_OK;
    }
    working = accel_working(b);
    if (!working) {
        return FSB_OK;
    }

    /* -- DVFS: energy and heat -- */
    starved = b->soc < c->soc_low || (b->eclipse && b->soc < c->soc_eclipse);
    want = level_index(b, b->want_level);
    /* the top level buys little throughput for a lot of heat: climb to the one below it */
    top = b->n_levels >= 2 ? b->n_levels - 2 : 0;
    if (starved) {
        want = 0;
    } else if (b->die_temp_degc > c->temp_high_degc || b->throttled) {
        want = want > 0 ? want - 1 : 0;
    } else if (b->die_temp_degc < c->temp_low_degc) {
        want = want + 1 < top ? want + 1 : top;
    }
    if (b->n_levels > 0 && strcmp(b->levels[want], b->level) != 0) {
        int rc = set_level(b, b->levels[want]);
        if (rc < 0) {
            return rc;
        }
    }

    /* -- work: keep a short queue while energy and heat allow -- */
    if (!starved && b->die_temp_degc < c->temp_high_degc) {
        for (k = b->queue_len; k < c->queue_target; k++) {
            TRY(submit_job(b, "inference", (uint64_t)b->next_seed));
            b->next_seed++;
        }
    }
    return FSB_OK;
}
#endif

/* ---- the loop --------------------------------------------------------------------------------- */

/* A board.step without a reply: lost on its way, or its reply lost? Ask the clock (a ping, repeated
 * if need be). A clock past the turn has run the step: it is not sent again (that would run one
 * period without a turn), and its limit is known. A clock still at the turn did not get it. */
static int step_lost(fsb_board *b)
{
    int rc = ping(b);
    if (rc != FSB_OK) {
        return rc < 0 ? rc : FSB_OK; /* no answer: the step goes out again at the next poll */
    }
    if (b->ping_t_ns > b->last_turn_ns) {
        uint64_t turn = (uint64_t)b->last_turn_ns;
        uint64_t from = b->step_limit_ns > turn ? b->step_limit_ns : turn;
        b->step_limit_ns = from + (uint64_t)(b->cfg.period_s * NS_PER_S);
        b->step_owed = false;
        b->step_seq = 0;
        b->stats.unacked_steps++;
        b->quiet_since_ms = b->io.millis(b->io.ctx);
        b->quiet_wait_ms = b->cfg.request_timeout_ms;
        say(b, "the clock ran the step whose reply was lost: not stepping again");
    }
    return FSB_OK;
}

int fsb_board_start(fsb_board *b)
{
    static const uint8_t flush = 0;
    int rc;
    /* a lone delimiter first: whatever half-frame the emulator holds from before is dropped,
     * instead of costing our hello (docs/protocol.md sec. 5) */
    if (!b->io.write_bytes(b->io.ctx, &flush, 1)) {
        return FSB_ERR_CLOSED;
    }
    rc = say_hello(b);
    if (rc != FSB_OK) {
        return rc;
    }
    if (b->hello_protocol != FSB_PROTOCOL_VERSION) {
        say(b, "the emulator speaks another protocol version: stopping");
        return FSB_ERR_VERSION;
    }
    b->started = true;
    b->lockstep = strcmp(b->hello_mode, "lockstep") == 0 && strcmp(b->hello_source, "board") == 0;
    /* a board that joins while the lockstep clock waits has missed that sim.waiting: the hello
     * reply says so, and the board takes its first turn at once (firmware_stubs/base.py run_board) */
    b->turn_now = b->lockstep && b->hello_waiting;
    if (b->hello_t_ns > b->t_ns) {
        b->t_ns = b->hello_t_ns;
    }
    b->next_tick_ns = b->t_ns;
    b->quiet_since_ms = b->io.millis(b->io.ctx);
    b->quiet_wait_ms = b->cfg.request_timeout_ms;
    say(b, b->lockstep ? "hello answered: lockstep, the board steps time" : "hello answered: free-running");
    rc = rail_set(b, true);
    if (rc < 0) {
        return rc;
    }
    say(b, "switched the payload rail on");
    return FSB_OK;
}

void fsb_board_restart(fsb_board *b)
{
    fsb_config cfg = b->cfg;
    fsb_io io = b->io;
    fsb_stats stats = b->stats;
    fsb_frame_stats rx = b->rx.stats;
    if (io.reset != NULL) {
        io.reset(io.ctx); /* an MCU resets here and never returns */
    }
    fsb_board_init(b, &cfg, &io);
    b->stats = stats; /* a host keeps counting across restarts */
    b->rx.stats = rx;
    b->stats.restarts++;
}

/* Is the emulator still there? Silent for a quarter of link_lost_ms: ask (ping; in lockstep the turn
 * logic pings sooner). Silent for all of it although the board kept asking: start over, as a
 * supervisor MCU's communication watchdog would (hello again; a new run is picked up from its reply).
 * Returns FSB_OK (restarted set when it started over) or a link error. */
static int watch_link(fsb_board *b, bool *restarted)
{
    uint32_t now = b->io.millis(b->io.ctx);
    uint32_t silent = now - b->last_rx_ms;
    uint32_t ask_after = b->cfg.link_lost_ms / 4u;
    *restarted = false;
    if (b->cfg.link_lost_ms == 0) {
        return FSB_OK;
    }
    if (silent >= b->cfg.link_lost_ms) {
        say(b, "the emulator has been silent too long: starting over");
        fsb_board_restart(b);
        *restarted = true;
        return FSB_OK;
    }
    if (silent >= ask_after && (uint32_t)(now - b->last_ping_ms) >= ask_after) {
        int rc = ping(b);
        return rc < 0 && rc != FSB_ERR_TIMEOUT ? rc : FSB_OK;
    }
    return FSB_OK;
}

int fsb_board_poll(fsb_board *b)
{
    int rc;
    bool restarted;
    if (!b->started) {
        rc = fsb_board_start(b);
        if (rc != FSB_OK) {
            return rc;
        }
    }
    rc = pump(b);
    if (rc != FSB_OK) {
        return rc;
    }
    rc = watch_link(b, &restarted);
    if (rc != FSB_OK || restarted) {
        return rc;
    }
    if (b->lockstep) {
        int64_t due = -1;
        if (!b->step_owed) {
            if (b->turn_now) {
                due = (int64_t)b->hello_t_ns;
                b->turn_now = false;
            } else if (b->waiting_t_ns > b->last_turn_ns) {
                /* a sim.waiting not later than the last turn is stale (it was already answered) */
                due = b->waiting_t_ns;
            }
            if (due < 0 && (uint32_t)(b->io.millis(b->io.ctx) - b->quiet_since_ms) >= b->quiet_wait_ms) {
                /* Quiet for a whole time-out: maybe the sim.waiting was lost on the line (a damaged
                 * frame is dropped, never answered) and the emulator waits for ever. Ask for the
                 * time: a clock at or past the last step's limit is waiting for this board. */
                b->quiet_since_ms = b->io.millis(b->io.ctx);
                rc = ping(b);
                if (rc < 0) {
                    return rc;
                }
                if (rc == FSB_OK && b->ping_t_ns >= 0 && (uint64_t)b->ping_t_ns >= b->step_limit_ns &&
                    b->ping_t_ns > b->last_turn_ns) {
                    due = b->ping_t_ns;
                    b->stats.missed_waits++;
                    say(b, "the clock waits but no sim.waiting came: taking the turn");
                } else if (b->quiet_wait_ms < b->cfg.request_timeout_ms * FSB_BACKOFF_MAX) {
                    b->quiet_wait_ms *= 2u; /* still running (a slow machine): ask less often */
                }
            }
            if (due < 0) {
                idle(b);
                return FSB_OK;
            }
            b->last_turn_ns = due;
            b->quiet_wait_ms = b->cfg.request_timeout_ms;
            /* owed even when the turn fails half-way (a time-out): the emulator waits for it */
            b->step_owed = true;
            b->step_seq = 0;
            rc = control_turn(b);
            if (rc < 0) {
                return rc;
            }
        }
        rc = board_step(b);
        if (rc == FSB_ERR_TIMEOUT) {
            /* the emulator waits for ever for a lost step; a lost reply must not cost a second one */
            return step_lost(b);
        }
        b->step_owed = false;
        b->step_seq = 0;
        return rc < 0 ? rc : FSB_OK;
    }
    if (b->t_ns >= b->next_tick_ns) {
        b->next_tick_ns = b->t_ns + (uint64_t)(b->cfg.period_s * NS_PER_S);
        return control_turn(b);
    }
    idle(b);
    return FSB_OK;
}

int fsb_board_run(fsb_board *b)
{
    for (;;) {
        int rc = fsb_board_poll(b);
        if (rc == FSB_ERR_CLOSED || rc == FSB_ERR_VERSION || (rc == FSB_REFUSED && !b->started)) {
            return rc;
        }
    }
}

const char *fsb_strerror(int rc)
{
    switch (rc) {
    case FSB_OK:
        return "ok";
    case FSB_REFUSED:
        return "refused by the emulator";
    case FSB_ERR_TIMEOUT:
        return "no reply in time";
    case FSB_ERR_CLOSED:
        return "link closed";
    case FSB_ERR_OVERFLOW:
        return "message too large for its buffer";
    case FSB_ERR_CODEC:
        return "malformed message";
    case FSB_ERR_VERSION:
        return "the emulator speaks another protocol version";
    default:
        return "unknown error";
    }
}
