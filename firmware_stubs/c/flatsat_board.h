/*
 * flatsat_board.h - portable C99 firmware core for flatsat's serial board protocol (version 1).
 *
 * What it holds, bottom to top (docs/protocol.md is the contract; section numbers refer to it):
 *
 *   fsb_crc16*          CRC-16/GENIBUS: poly 0x1021, init 0xFFFF, no reflection, final XOR 0xFFFF (sec. 5)
 *   fsb_cobs_*          COBS, the standard form (Cheshire & Baker 1999), byte-identical to Python's `cobs`
 *   fsb_frame_encode    message || CRC (big-endian) -> COBS -> 0x00
 *   fsb_deframer_*      byte-at-a-time receiver: splits at 0x00, checks COBS, length and CRC, counts
 *                       bad frames by reason, resynchronises at the next delimiter
 *   fsb_mpw_* / fsb_mpr_*  a minimal msgpack writer and a token reader for the subset on the wire
 *                       (nil, bool, int, uint, float32/64, str, bin, array, map; ext is skipped)
 *   fsb_envelope_*      the six-key envelope {v, topic, seq, t_ns, src, payload} (sec. 2)
 *   fsb_board_*         a board controller: hello, lockstep turns (board.step), telemetry, events,
 *                       requests matched to replies by id (retried with back-off), and the reference
 *                       controller's rules (load shed, DVFS on heat, hang reset, latch-up power cycle,
 *                       job queue, every result checked for silent data corruption: fsb_jobcheck.h)
 *
 * No malloc, no globals, no OS calls: every buffer lives in a struct the application owns, and the
 * application (the port: main_posix.c on a host, targets/<mcu>/ on a microcontroller) supplies UART
 * bytes in and out, a millisecond tick, a reset and a log line through fsb_io. Nothing recurses on
 * input (nested msgpack is skipped with a counter), so a hostile frame cannot exhaust the stack.
 *
 * Built with -DFLATSAT_NAIVE the controller is the deliberately naive one of firmware_stubs/naive
 * (flat out, no checks, no recovery): the standard scenarios must fail it.
 */
#ifndef FLATSAT_BOARD_H
#define FLATSAT_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FSB_PROTOCOL_VERSION 1
#define FSB_VERSION "1.0.0"

/* Buffer sizes: override with -D for a small MCU. The largest messages a board must take are the
 * hello reply (it lists every board topic: 623 bytes framed for configs/suncatcher-proto.toml) and
 * eps.telemetry (590 bytes with five rails; ~90 more per rail). A frame that does not fit is
 * dropped and counted (rx.stats.oversized), so leave headroom for bigger satellites. */
#ifndef FSB_RX_FRAME_MAX
#define FSB_RX_FRAME_MAX 2048 /* COBS bytes of one received frame, before its delimiter */
#endif
#ifndef FSB_TX_MSG_MAX
#define FSB_TX_MSG_MAX 384 /* one encoded envelope the board sends */
#endif
#ifndef FSB_MAX_LEVELS
#define FSB_MAX_LEVELS 8 /* DVFS levels remembered */
#endif
#ifndef FSB_MAX_VERDICTS
#define FSB_MAX_VERDICTS 8 /* checked job results waiting to be reported (accel.job.verdict) */
#endif
#define FSB_MAX_SENDS 5   /* copies of a repeatable request sent before it is given up */
#define FSB_BACKOFF_MAX 8u /* the longest wait for a reply, in request time-outs (doubling from one) */
#define FSB_NAME_MAX 32 /* rail names, DVFS level names, error fields (with the NUL) */

/* Worst-case COBS output for n input bytes: one code byte per 254 data bytes, at least one. */
#define FSB_COBS_MAX(n) ((n) + (n) / 254u + 1u)
/* Worst-case frame for an n-byte message: CRC (2), COBS, delimiter (1). */
#define FSB_FRAME_MAX(n) (FSB_COBS_MAX((n) + 2u) + 1u)

/* Return codes. >= 0 is success (FSB_REFUSED: the emulator answered ok: false). */
enum {
    FSB_OK = 0,
    FSB_REFUSED = 1,
    FSB_ERR_TIMEOUT = -1,  /* no reply within the request time-out (wall clock, fsb_io.millis) */
    FSB_ERR_CLOSED = -2,   /* read_byte reported the link closed, or write_bytes failed */
    FSB_ERR_OVERFLOW = -3, /* a message did not fit its buffer */
    FSB_ERR_CODEC = -4,    /* malformed msgpack or envelope */
    FSB_ERR_VERSION = -5   /* the emulator speaks another protocol version */
};

/* ---- CRC-16/GENIBUS -------------------------------------------------------------------------- */

/* Complete CRC of a buffer (check value 0xD64E for "123456789"). */
uint16_t fsb_crc16(const uint8_t *data, size_t len);

/* ---- COBS -------------------------------------------------------------------------------------- */

/* Streaming encoder: feed bytes one at a time (lets the CRC follow the message without a copy). */
typedef struct fsb_cobs_enc {
    uint8_t *dst;
    size_t cap;
    size_t out;       /* bytes written so far */
    size_t code_pos;  /* where the open block's code byte goes */
    uint8_t code;     /* 1 + data bytes in the open block */
    bool need_block;  /* no block open: the next byte opens one */
    bool closed_full; /* the last block closed because it was full (0xFF), not on a zero */
    bool overflow;
} fsb_cobs_enc;

void fsb_cobs_enc_begin(fsb_cobs_enc *e, uint8_t *dst, size_t cap);
void fsb_cobs_enc_put(fsb_cobs_enc *e, uint8_t byte);
/* Returns the encoded length, 0 if dst was too small. */
size_t fsb_cobs_enc_end(fsb_cobs_enc *e);

/* One-shot encode; returns the encoded length, 0 if dst (cap bytes) is too small. */
size_t fsb_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);
/* Decode; dst may equal src (the output never overtakes the input). dst needs len bytes.
 * Returns false on a zero byte or a code byte that points past the end. */
bool fsb_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t *out_len);

/* ---- Frames ------------------------------------------------------------------------------------ */

/* Encode message || CRC16 -> COBS -> 0x00 into dst; returns the frame length, 0 if it does not fit. */
size_t fsb_frame_encode(const uint8_t *msg, size_t len, uint8_t *dst, size_t cap);

typedef struct fsb_frame_stats {
    uint32_t frames;    /* good frames delivered */
    uint32_t bad_cobs;  /* invalid COBS */
    uint32_t too_short; /* fewer than 3 bytes after COBS (1 message byte + CRC) */
    uint32_t bad_crc;   /* CRC mismatch */
    uint32_t oversized; /* longer than the buffer: skipped up to its delimiter, unbuffered */
} fsb_frame_stats;

typedef struct fsb_deframer {
    uint8_t *buf;
    size_t cap; /* largest COBS frame accepted (bytes before the delimiter) */
    size_t len;
    bool discarding; /* inside an oversized frame: skip to the next delimiter */
    fsb_frame_stats stats;
} fsb_deframer;

void fsb_deframer_init(fsb_deframer *d, uint8_t *buf, size_t cap);
/* Feed one received byte. Returns the length of a whole, checked message (then *msg points at it,
 * valid until the next call), or 0. Bad frames are counted in d->stats and dropped, never returned. */
size_t fsb_deframer_feed(fsb_deframer *d, uint8_t byte, const uint8_t **msg);

/* ---- msgpack writer ---------------------------------------------------------------------------- */

/* Writes the smallest encoding of each value, as msgpack-python does, so the bytes are identical.
 * On overflow it sets `overflow` and ignores further writes: check once at the end. */
typedef struct fsb_mpw {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow;
} fsb_mpw;

void fsb_mpw_init(fsb_mpw *w, uint8_t *buf, size_t cap);
void fsb_mpw_nil(fsb_mpw *w);
void fsb_mpw_bool(fsb_mpw *w, bool v);
void fsb_mpw_int(fsb_mpw *w, int64_t v);
void fsb_mpw_uint(fsb_mpw *w, uint64_t v);
void fsb_mpw_float32(fsb_mpw *w, float v);
void fsb_mpw_float64(fsb_mpw *w, double v); /* float32 on targets whose double is 32-bit */
void fsb_mpw_str(fsb_mpw *w, const char *s);
void fsb_mpw_str_n(fsb_mpw *w, const char *s, size_t len);
void fsb_mpw_bin(fsb_mpw *w, const uint8_t *data, size_t len);
void fsb_mpw_array(fsb_mpw *w, uint32_t n); /* then n values */
void fsb_mpw_map(fsb_mpw *w, uint32_t n);   /* then n key, value pairs */

/* ---- msgpack reader ---------------------------------------------------------------------------- */

typedef enum fsb_mp_type {
    FSB_MP_NIL,
    FSB_MP_BOOL,
    FSB_MP_INT,  /* negative-int formats (negative fixint, int 8..64) */
    FSB_MP_UINT, /* positive fixint, uint 8..64 */
    FSB_MP_F32,
    FSB_MP_F64,
    FSB_MP_STR,
    FSB_MP_BIN,
    FSB_MP_ARRAY, /* v.n items follow */
    FSB_MP_MAP,   /* v.n key, value pairs follow */
    FSB_MP_EXT
} fsb_mp_type;

typedef struct fsb_mp_token {
    fsb_mp_type type;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        float f32;
        double f64;
        uint32_t n;
    } v;
    const uint8_t *ptr; /* str / bin / ext data (not NUL-terminated) */
    uint32_t len;
    int8_t ext_type;
} fsb_mp_token;

typedef struct fsb_mpr {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    bool error; /* sticky: truncated input or a reserved byte (0xC1) */
} fsb_mpr;

void fsb_mpr_init(fsb_mpr *r, const uint8_t *buf, size_t len);
/* Read one token (a scalar, or the header of an array / map). False at the end or on bad input. */
bool fsb_mpr_next(fsb_mpr *r, fsb_mp_token *t);
/* Skip one whole value, however deeply nested (iterative, no recursion). */
bool fsb_mpr_skip(fsb_mpr *r);

/* Token helpers: the value as a C type, false if the token's type does not fit. */
bool fsb_mp_as_i64(const fsb_mp_token *t, int64_t *out);
bool fsb_mp_as_double(const fsb_mp_token *t, double *out); /* any int or float */
/* True when the token is a str equal to the NUL-terminated `s`. */
bool fsb_mp_str_eq(const fsb_mp_token *t, const char *s);
/* Copy a str token into dst (cap bytes, always NUL-terminated); false if not a str or truncated. */
bool fsb_mp_str_copy(const fsb_mp_token *t, char *dst, size_t cap);

/* ---- Envelope ---------------------------------------------------------------------------------- */

typedef struct fsb_envelope {
    int64_t v;
    const char *topic; /* not NUL-terminated: topic_len bytes */
    size_t topic_len;
    uint64_t seq;
    uint64_t t_ns;
    const char *src;
    size_t src_len;
    const uint8_t *payload; /* the payload map's msgpack bytes */
    size_t payload_len;
} fsb_envelope;

/* Strict decode of one envelope (the emulator's rules, sec. 2): exactly the six keys, v == 1,
 * topic 1..128 bytes, seq and t_ns ints in 0..2^63-1, src 0..128 bytes, payload a well-formed map,
 * no trailing bytes. Returns FSB_OK, FSB_ERR_VERSION or FSB_ERR_CODEC. */
int fsb_envelope_decode(const uint8_t *msg, size_t len, fsb_envelope *env);
/* Write the envelope's map header and first five fields, then the "payload" key: the caller writes
 * the payload map next. */
void fsb_envelope_begin(fsb_mpw *w, const char *topic, uint64_t seq, uint64_t t_ns, const char *src);
bool fsb_envelope_topic_is(const fsb_envelope *env, const char *topic);

/* ---- The board --------------------------------------------------------------------------------- */

#define FSB_IO_NONE (-1)   /* read_byte: nothing received yet */
#define FSB_IO_CLOSED (-2) /* read_byte: the link is gone (or the application wants to stop) */

typedef struct fsb_io {
    /* One received byte (0..255), FSB_IO_NONE or FSB_IO_CLOSED. Must not block: the core reads until
     * FSB_IO_NONE before it acts, so a wait here would delay every turn. */
    int (*read_byte)(void *ctx);
    /* Write all len bytes; false if the link is gone. */
    bool (*write_bytes)(void *ctx, const uint8_t *data, size_t len);
    /* Monotonic milliseconds (may wrap): only request time-outs use it. */
    uint32_t (*millis)(void *ctx);
    /* Optional (NULL: spin): called when the core has nothing to do until more bytes arrive. Sleep
     * here until input or a few ms pass (POSIX poll(), an MCU's WFI), to save power and CPU. */
    void (*idle)(void *ctx);
    /* Optional (NULL): one line about an action and why, at sim time t_ns. */
    void (*log)(void *ctx, uint64_t t_ns, const char *text);
    /* Optional (NULL): restart the board as from power-on (an MCU: a system reset, never returns). The
     * core calls it when the emulator has been silent for link_lost_ms although the board kept asking;
     * if it is NULL or returns, the core starts over by itself (fsb_board_restart). */
    void (*reset)(void *ctx);
    void *ctx;
} fsb_io;

typedef struct fsb_config {
    const char *name;    /* board.hello name and envelope src (default "c-stub") */
    const char *version; /* board.hello version (default FSB_VERSION) */
    const char *rail;    /* the payload's PDU rail (default "payload") */
    double period_s;     /* control period in sim seconds; the board.step size in lockstep (10) */
    /* Energy: shed the rail below soc_off or bus_off_v; back on at soc_on and bus_on_v, in sun. */
    double soc_off, soc_on, bus_off_v, bus_on_v;
    /* Energy: lowest DVFS level and no new work below soc_low, or in eclipse below soc_eclipse. */
    double soc_low, soc_eclipse;
    /* Heat: one DVFS level down above temp_high_degc, one up below temp_low_degc; after a thermal
     * shutdown, reset once the die is below temp_restart_degc. */
    double temp_high_degc, temp_low_degc, temp_restart_degc;
    int32_t queue_target; /* inference jobs kept queued */
    int32_t job_size;     /* batches per job */
    /* Wall-clock wait for a reply. A request safe to repeat then goes again (same id, so a late reply
     * still answers it), waiting twice as long each time up to FSB_BACKOFF_MAX time-outs, at most
     * FSB_MAX_SENDS copies; a board.step is checked with a ping instead (see fsb_board_poll). */
    uint32_t request_timeout_ms;
    /* No valid frame for this long (wall ms) although the board pinged: the link or the emulator is
     * gone, and the board restarts (fsb_io.reset) to say hello again. 0: never. */
    uint32_t link_lost_ms;
} fsb_config;

/* The reference policy's defaults (fsb_policy.h, generated from emulator/reference_policy.py). */
void fsb_config_default(fsb_config *cfg);

typedef enum fsb_accel_state {
    FSB_ACC_UNKNOWN,
    FSB_ACC_OFF,
    FSB_ACC_BOOTING,
    FSB_ACC_IDLE,
    FSB_ACC_BUSY,
    FSB_ACC_THROTTLED,
    FSB_ACC_HUNG,
    FSB_ACC_LATCHED_UP,
    FSB_ACC_FAILED
} fsb_accel_state;

typedef struct fsb_stats {
    uint32_t turns;         /* control turns taken */
    uint32_t steps;         /* board.step requests acknowledged */
    uint32_t requests;      /* requests sent (every one gets a reply or times out) */
    uint32_t acked;         /* replies with ok: true */
    uint32_t refused;       /* replies with ok: false */
    uint32_t timeouts;      /* waits for a reply that ran out (a repeated request may have several) */
    uint32_t retries;       /* copies sent again (same seq) of a request safe to repeat */
    uint32_t lost;          /* requests given up without a reply (not repeatable, or FSB_MAX_SENDS) */
    uint32_t unacked_steps; /* board.step whose reply was lost, but the clock (a ping) shows it ran */
    uint32_t pings;         /* pings sent to find out whether the clock waits or the emulator is there */
    uint32_t restarts;      /* starts over after the emulator fell silent (link_lost_ms) */
    uint32_t stale_replies; /* replies to no outstanding request (late, after a time-out) */
    uint32_t missed_waits;  /* turns taken after a ping showed the clock waiting (sim.waiting lost) */
    uint32_t telemetry;     /* telemetry messages read */
    uint32_t events;        /* events read */
    uint32_t decode_errors; /* frames that passed the CRC but held a bad envelope */
    uint32_t sheds;         /* rail switched off for energy */
    uint32_t hang_resets;   /* accel.reset after a hang */
    uint32_t power_cycles;  /* rail switched off after a latch-up */
    uint32_t rail_resets;   /* eps.rail.reset of a latched limiter */
    uint32_t dvfs_changes;  /* accel.dvfs.set acknowledged */
    uint32_t jobs_submitted;
    uint32_t jobs_done;        /* accel.job.done with ok: true */
    uint32_t jobs_lost;        /* accel.job.done with ok: false */
    uint32_t jobs_checked;     /* results recomputed and compared with their digest */
    uint32_t sdc_detected;     /* results whose digest did not match (rejected and resubmitted) */
    uint32_t verdicts;         /* accel.job.verdict answered */
    uint32_t verdicts_dropped; /* checked results not reported (the queue was full, or no reply) */
} fsb_stats;

typedef struct fsb_board {
    fsb_config cfg;
    fsb_io io;
    fsb_stats stats;

    /* link */
    fsb_deframer rx;
    uint8_t rx_buf[FSB_RX_FRAME_MAX];
    uint8_t tx_msg[FSB_TX_MSG_MAX];
    uint8_t tx_frame[FSB_FRAME_MAX(FSB_TX_MSG_MAX)];
    fsb_mpw w;
    uint64_t seq;      /* last request id used */
    uint64_t pending;  /* id of the request awaiting its reply, 0: none */
    const char *pending_topic; /* its topic (which reply data to read) */
    bool reply_seen;   /* the pending request's reply arrived */
    bool reply_ok;
    char err_field[FSB_NAME_MAX]; /* error.field of the last refusal */
    char err_valid[FSB_MAX_LEVELS][FSB_NAME_MAX]; /* error.valid of the last refusal (first items) */
    uint8_t n_err_valid;

    /* sim time and turns */
    uint64_t t_ns;        /* latest sim time seen on the wire */
    bool started;         /* hello answered */
    bool lockstep;        /* mode lockstep with lockstep_source "board": the board steps time */
    bool turn_now;        /* the hello reply said the clock waits: take the first turn at once */
    bool step_owed;       /* a turn was taken but its board.step is not acknowledged yet */
    int64_t waiting_t_ns; /* newest sim.waiting, -1: none */
    int64_t last_turn_ns; /* sim time of the last turn, -1: none */
    uint64_t next_tick_ns; /* free-running mode: next turn */
    uint64_t step_limit_ns; /* lockstep: where the last board.step lets the clock run (its reply) */
    int64_t ping_t_ns;      /* sim time in the last ping reply */
    uint64_t step_seq;      /* the turn's board.step id once sent (a repeat uses it again), 0: none */
    uint64_t step_t_ns;     /* its envelope t_ns */
    uint32_t quiet_since_ms; /* lockstep: when the board last stepped or took a turn (wall ms) */
    uint32_t quiet_wait_ms;  /* lockstep: quiet this long, ask the clock (doubles while it runs) */
    uint32_t last_rx_ms;     /* when the last good frame arrived (wall ms) */
    uint32_t last_ping_ms;   /* when the board last pinged (wall ms) */
    uint64_t hello_t_ns;
    bool hello_waiting;
    char hello_mode[16];
    char hello_source[16];
    int64_t hello_protocol;

    /* what the board has seen */
    bool have_eps, have_acc;
    double bus_v, soc;
    bool rail_seen, rail_on, rail_latched;
    bool eclipse;
    fsb_accel_state state;
    double die_temp_degc;
    bool throttled; /* accel.status.throttle != "none" */
    char level[FSB_NAME_MAX];
    int32_t queue_len;

    /* controller state (the reference controller's) */
    char levels[FSB_MAX_LEVELS][FSB_NAME_MAX];
    uint8_t n_levels;
    char want_level[FSB_NAME_MAX]; /* the level last set */
    int64_t next_seed;
    bool power_cycle_pending;
    bool shutdown_thermal;
    bool rail_off_by_me;

    /* checked results waiting for their accel.job.verdict (oldest first) */
    struct fsb_verdict {
        int64_t id;
        uint64_t seed;
        char kind[16];
        bool ok; /* the recomputed digest matched */
    } verdicts[FSB_MAX_VERDICTS];
    uint8_t n_verdicts;
} fsb_board;

void fsb_board_init(fsb_board *b, const fsb_config *cfg, const fsb_io *io);
/* Say board.hello, then switch the rail on. FSB_OK, or an error (call again to retry). */
int fsb_board_start(fsb_board *b);
/* Do what is due: read what has arrived, say hello if not yet done, take a control turn when it is
 * the board's turn (then board.step in lockstep). In lockstep, after request_timeout_ms without a
 * turn it pings: a clock at or past the last step's limit is waiting for a sim.waiting that was
 * lost on the line, and the board takes its turn. Call it from the main loop. FSB_OK, or an error:
 * FSB_ERR_CLOSED means stop; the others are worth a retry. */
int fsb_board_poll(fsb_board *b);
/* fsb_board_poll until the link closes; returns the error that ended it. */
int fsb_board_run(fsb_board *b);
/* Start over as from power-on (hello again), keeping cfg, io and the cumulative stats. */
void fsb_board_restart(fsb_board *b);

const char *fsb_strerror(int rc);

#ifdef __cplusplus
}
#endif

#endif /* FLATSAT_BOARD_H */
