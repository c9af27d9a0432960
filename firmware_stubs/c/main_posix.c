/*
 * main_posix.c - the C stub as a host program: a tty (or an inherited descriptor) in raw mode,
 * the portable core on top. Used by tests/integration/test_c_stub.py over a pty.
 *
 *   flatsat_board_posix [options] /dev/ttyUSB0       open a serial device or a pty slave
 *   flatsat_board_posix [options] --fd 3             use an inherited descriptor (a pty master)
 *   flatsat_board_posix --transcode [--max-frame N]  codec check: frames on stdin are decoded and
 *                                                    re-encoded by the core onto stdout
 *   flatsat_board_posix --job-digest SEED KIND       the digest the core computes for a job
 *
 * This is the host port of the core (flatsat_board.h): UART bytes in and out are a tty's, the tick is
 * CLOCK_MONOTONIC, the reset drops what the tty holds (the core then starts over), the log is stderr.
 * A device opened by path that goes away (a USB-UART unplugged) is opened again every second; only
 * SIGTERM, SIGINT, --max-turns, a refused hello, another protocol version, or an inherited descriptor
 * whose other side closed end the program. On exit it prints one summary line of counters to stderr.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* glibc: baud rates above 230400 (B460800, B921600, ...) */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "flatsat_board.h"
#include "fsb_jobcheck.h"
#include "fsb_policy.h"

/* a policy number as text, for the help */
#define STR_(x) #x
#define STR(x) STR_(x)

/* Set from the signal handler only; the core has no globals, the host program needs this one. */
static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ---- the link -------------------------------------------------------------------------------- */

typedef struct posix_link {
    int fd_in, fd_out;
    uint8_t buf[1024];
    size_t len, pos;
    int read_wait_ms; /* 0 for the board (the core must not block in read_byte); -1 to transcode */
    bool verbose;
    const char *name;
} posix_link;

static int link_read_byte(void *ctx)
{
    posix_link *l = ctx;
    struct pollfd p;
    ssize_t n;
    if (l->pos < l->len) {
        return l->buf[l->pos++];
    }
    if (g_stop) {
        return FSB_IO_CLOSED;
    }
    p.fd = l->fd_in;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, l->read_wait_ms) <= 0) {
        return FSB_IO_NONE; /* nothing yet, or EINTR (a signal: g_stop is checked next time) */
    }
    n = read(l->fd_in, l->buf, sizeof l->buf);
    if (n > 0) {
        l->len = (size_t)n;
        l->pos = 1;
        return l->buf[0];
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return FSB_IO_NONE;
    }
    /* 0: end of file; EIO: a pty whose other side closed */
    return FSB_IO_CLOSED;
}

/* Nothing to do until bytes arrive: sleep in poll() for them, at most a few ms. */
static void link_idle(void *ctx)
{
    posix_link *l = ctx;
    struct pollfd p;
    if (l->pos < l->len || g_stop) {
        return;
    }
    p.fd = l->fd_in;
    p.events = POLLIN;
    p.revents = 0;
    (void)poll(&p, 1, 20);
}

static bool link_write_bytes(void *ctx, const uint8_t *data, size_t len)
{
    posix_link *l = ctx;
    while (len > 0) {
        ssize_t n = write(l->fd_out, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                struct pollfd p;
                p.fd = l->fd_out;
                p.events = POLLOUT;
                p.revents = 0;
                (void)poll(&p, 1, 100);
                continue;
            }
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static uint32_t link_millis(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* The port's reset: what a UART reset would do to the line (drop what is queued both ways); the core
 * then starts over by itself. */
static void link_reset(void *ctx)
{
    posix_link *l = ctx;
    l->pos = l->len = 0;
    (void)tcflush(l->fd_in, TCIOFLUSH);
    if (l->verbose) {
        fprintf(stderr, "[%s] reset: starting over\n", l->name);
    }
}

static void link_log(void *ctx, uint64_t t_ns, const char *text)
{
    posix_link *l = ctx;
    if (l->verbose) {
        fprintf(stderr, "[%s] t=%" PRIu64 "s %s\n", l->name, t_ns / 1000000000u, text);
    }
}

/* ---- the tty ----------------------------------------------------------------------------------- */

static int baud_constant(long baud, speed_t *out)
{
    static const struct {
        long baud;
        speed_t speed;
    } table[] = {
        {9600, B9600},     {19200, B19200},   {38400, B38400},   {57600, B57600},
        {115200, B115200}, {230400, B230400},
#ifdef B460800
        {460800, B460800},
#endif
#ifdef B921600
        {921600, B921600},
#endif
#ifdef B1000000
        {1000000, B1000000},
#endif
#ifdef B2000000
        {2000000, B2000000},
#endif
    };
    size_t i;
    for (i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].baud == baud) {
            *out = table[i].speed;
            return 0;
        }
    }
    return -1;
}

/* Raw 8N1 by hand: cfmakeraw() is not POSIX. A pty ignores the rate, a UART does not. */
static int make_raw(int fd, long baud)
{
    struct termios tio;
    speed_t speed;
    if (tcgetattr(fd, &tio) != 0) {
        return errno == ENOTTY ? 1 : -1; /* a pipe or socket: nothing to configure */
    }
    if (baud_constant(baud, &speed) != 0) {
        errno = EINVAL;
        return -1;
    }
    tio.c_iflag &= (tcflag_t) ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    tio.c_oflag &= (tcflag_t)~OPOST;
    tio.c_lflag &= (tcflag_t) ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= (tcflag_t) ~(CSIZE | PARENB | CSTOPB);
    tio.c_cflag |= CS8 | CLOCAL | CREAD;
    tio.c_cc[VMIN] = 0; /* reads never block: poll() does the waiting */
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, speed);
    cfsetospeed(&tio, speed);
    return tcsetattr(fd, TCSANOW, &tio) == 0 ? 0 : -1;
}

/* ---- codec check mode -------------------------------------------------------------------------- */

#define TRANSCODE_MAX 65536

/* Copy one msgpack value token by token (no recursion); false on bad input or no room. */
static bool copy_value(fsb_mpr *r, fsb_mpw *w)
{
    uint64_t pending = 1;
    fsb_mp_token t;
    while (pending > 0) {
        if (!fsb_mpr_next(r, &t)) {
            return false;
        }
        pending--;
        switch (t.type) {
        case FSB_MP_NIL:
            fsb_mpw_nil(w);
            break;
        case FSB_MP_BOOL:
            fsb_mpw_bool(w, t.v.b);
            break;
        case FSB_MP_INT:
            fsb_mpw_int(w, t.v.i);
            break;
        case FSB_MP_UINT:
            fsb_mpw_uint(w, t.v.u);
            break;
        case FSB_MP_F32:
            fsb_mpw_float32(w, t.v.f32);
            break;
        case FSB_MP_F64:
            fsb_mpw_float64(w, t.v.f64);
            break;
        case FSB_MP_STR:
            fsb_mpw_str_n(w, (const char *)t.ptr, t.len);
            break;
        case FSB_MP_BIN:
            fsb_mpw_bin(w, t.ptr, t.len);
            break;
        case FSB_MP_ARRAY:
            fsb_mpw_array(w, t.v.n);
            pending += t.v.n;
            break;
        case FSB_MP_MAP:
            fsb_mpw_map(w, t.v.n);
            pending += 2u * (uint64_t)t.v.n;
            break;
        default: /* ext: not on this protocol */
            return false;
        }
    }
    return !w->overflow;
}

/* Every good frame on stdin: strict envelope decode, then the same envelope written again by the
 * core's writer (payload copied value by value) and framed onto stdout. The test compares the
 * result with what Python sent, byte for byte. */
static int transcode(size_t max_frame)
{
    static uint8_t rx[TRANSCODE_MAX], msg[TRANSCODE_MAX], frame[FSB_FRAME_MAX(TRANSCODE_MAX)];
    posix_link l;
    fsb_deframer d;
    uint32_t codec_errors = 0;
    memset(&l, 0, sizeof l);
    l.fd_in = 0;
    l.fd_out = 1;
    l.read_wait_ms = -1; /* a filter: block until input or end of file */
    fsb_deframer_init(&d, rx, max_frame < sizeof rx ? max_frame : sizeof rx);
    for (;;) {
        const uint8_t *m;
        size_t n;
        int c = link_read_byte(&l);
        if (c == FSB_IO_CLOSED) {
            break;
        }
        if (c < 0) {
            continue;
        }
        n = fsb_deframer_feed(&d, (uint8_t)c, &m);
        if (n > 0) {
            fsb_envelope env;
            fsb_mpw w;
            fsb_mpr r;
            size_t out;
            if (fsb_envelope_decode(m, n, &env) != FSB_OK) {
                codec_errors++;
                continue;
            }
            fsb_mpw_init(&w, msg, sizeof msg);
            fsb_mpw_map(&w, 6);
            fsb_mpw_str(&w, "topic");
            fsb_mpw_str_n(&w, env.topic, env.topic_len);
            fsb_mpw_str(&w, "v");
            fsb_mpw_int(&w, env.v);
            fsb_mpw_str(&w, "seq");
            fsb_mpw_uint(&w, env.seq);
            fsb_mpw_str(&w, "t_ns");
            fsb_mpw_uint(&w, env.t_ns);
            fsb_mpw_str(&w, "src");
            fsb_mpw_str_n(&w, env.src, env.src_len);
            fsb_mpw_str(&w, "payload");
            fsb_mpr_init(&r, env.payload, env.payload_len);
            if (!copy_value(&r, &w)) {
                codec_errors++;
                continue;
            }
            out = fsb_frame_encode(msg, w.len, frame, sizeof frame);
            if (out == 0 || !link_write_bytes(&l, frame, out)) {
                return 1;
            }
        }
    }
    fprintf(stderr, "frames=%" PRIu32 " bad_cobs=%" PRIu32 " too_short=%" PRIu32 " bad_crc=%" PRIu32
                    " oversized=%" PRIu32 " codec_errors=%" PRIu32 "\n",
            d.stats.frames, d.stats.bad_cobs, d.stats.too_short, d.stats.bad_crc, d.stats.oversized,
            codec_errors);
    return 0;
}

static int job_digest(const char *seed_text, const char *kind)
{
    char *end;
    unsigned long long seed;
    uint32_t salt = fsb_job_salt(kind, strlen(kind));
    char hex[FSB_DIGEST_HEX_LEN + 1];
    errno = 0;
    seed = strtoull(seed_text, &end, 10);
    if (errno != 0 || end == seed_text || *end != '\0' || seed_text[0] == '-' || salt == 0) {
        fprintf(stderr, "flatsat_board_posix: --job-digest SEED KIND: SEED an integer 0..2^64-1, KIND "
                        "inference or training\n");
        return 2;
    }
    fsb_job_digest_hex((uint64_t)seed, salt, hex);
    printf("%s\n", hex);
    return 0;
}

static int sha256_of_stdin(void)
{
    uint8_t buf[4096], out[32];
    fsb_sha256 s;
    ssize_t n;
    size_t i;
    fsb_sha256_init(&s);
    while ((n = read(0, buf, sizeof buf)) > 0) {
        fsb_sha256_update(&s, buf, (size_t)n);
    }
    fsb_sha256_final(&s, out);
    for (i = 0; i < sizeof out; i++) {
        printf("%02x", out[i]);
    }
    printf("\n");
    return 0;
}

static int crc_of_stdin(void)
{
    static uint8_t data[TRANSCODE_MAX];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof data && (n = read(0, data + len, sizeof data - len)) > 0) {
        len += (size_t)n;
    }
    printf("%04X\n", (unsigned)fsb_crc16(data, len));
    return 0;
}

/* ---- command line ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flatsat_board_posix [options] TTY\n"
            "       flatsat_board_posix [options] --fd N\n"
            "       flatsat_board_posix --transcode [--max-frame BYTES]\n"
            "       flatsat_board_posix --crc16   (CRC-16/GENIBUS of stdin, in hex)\n"
            "       flatsat_board_posix --sha256  (SHA-256 of stdin, in hex)\n"
            "       flatsat_board_posix --job-digest SEED KIND   (the job's result digest, as the board checks it)\n"
            "\n"
            "The flatsat C firmware stub on a serial line (docs/protocol.md).\n"
            "\n"
            "options:\n"
            "  --baud N          line rate, bit/s (default 115200; a pty ignores it)\n"
            "  --fd N            use inherited descriptor N instead of opening TTY\n"
            "  --name NAME       board name in board.hello and src (default c-stub)\n"
            "  --rail NAME       the payload rail (default " FSB_POLICY_RAIL ")\n"
            "  --period S        control period and board.step size, sim seconds (default " STR(FSB_POLICY_PERIOD_S) ")\n"
            "  --soc-off X       shed the rail below this state of charge (default " STR(FSB_POLICY_SOC_OFF) ")\n"
            "  --soc-on X        back on at this state of charge (default " STR(FSB_POLICY_SOC_ON) ")\n"
            "  --bus-off-v V     shed the rail below this bus voltage (default " STR(FSB_POLICY_BUS_OFF_V) ")\n"
            "  --bus-on-v V      back on at this bus voltage (default " STR(FSB_POLICY_BUS_ON_V) ")\n"
            "  --queue N         inference jobs kept queued (default " STR(FSB_POLICY_QUEUE_TARGET) ")\n"
            "  --job-size N      batches per job (default " STR(FSB_POLICY_JOB_SIZE) ")\n"
            "  --timeout-ms N    wall-clock wait for a reply (default 5000); a request safe to repeat then\n"
            "                    goes again, waiting twice as long each time (up to 8x, 5 copies)\n"
            "  --link-lost-ms N  start over (hello again) after this long without a frame (default 60000;\n"
            "                    0: never)\n"
            "  --max-turns N     stop after N control turns (their steps acknowledged)\n"
            "  -v, --verbose     log every action to stderr\n");
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static fsb_board board; /* ~5 KiB: static, not on the stack */
    fsb_config cfg;
    fsb_io io;
    posix_link l;
    struct sigaction sa;
    const char *path = NULL;
    long baud = 115200, fd = -1, max_frame = TRANSCODE_MAX, max_turns = 0, v;
    bool do_transcode = false, verbose = false;
    int i, rc, raw;

    fsb_config_default(&cfg);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
            continue;
        } else if (strcmp(a, "--transcode") == 0) {
            do_transcode = true;
            continue;
        } else if (strcmp(a, "--crc16") == 0) {
            return crc_of_stdin();
        } else if (strcmp(a, "--sha256") == 0) {
            return sha256_of_stdin();
        } else if (strcmp(a, "--job-digest") == 0) {
            if (i + 2 >= argc) {
                fprintf(stderr, "flatsat_board_posix: --job-digest needs SEED and KIND\n");
                return 2;
            }
            return job_digest(argv[i + 1], argv[i + 2]);
        } else if (a[0] != '-') {
            path = a;
            continue;
        }
        if (val == NULL) {
            fprintf(stderr, "flatsat_board_posix: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--baud") == 0) {
            ok = parse_long(val, &baud) && baud > 0;
        } else if (strcmp(a, "--fd") == 0) {
            ok = parse_long(val, &fd) && fd >= 0;
        } else if (strcmp(a, "--max-frame") == 0) {
            ok = parse_long(val, &max_frame) && max_frame > 0;
        } else if (strcmp(a, "--name") == 0) {
            cfg.name = val;
            ok = val[0] != '\0' && strlen(val) <= 64;
        } else if (strcmp(a, "--rail") == 0) {
            cfg.rail = val;
        } else if (strcmp(a, "--period") == 0) {
            ok = parse_double(val, &cfg.period_s) && cfg.period_s > 0 && cfg.period_s <= 86400;
        } else if (strcmp(a, "--soc-off") == 0) {
            ok = parse_double(val, &cfg.soc_off);
        } else if (strcmp(a, "--soc-on") == 0) {
            ok = parse_double(val, &cfg.soc_on);
        } else if (strcmp(a, "--bus-off-v") == 0) {
            ok = parse_double(val, &cfg.bus_off_v);
        } else if (strcmp(a, "--bus-on-v") == 0) {
            ok = parse_double(val, &cfg.bus_on_v);
        } else if (strcmp(a, "--queue") == 0) {
            ok = parse_long(val, &v) && v >= 0 && v <= 64;
            cfg.queue_target = (int32_t)v;
        } else if (strcmp(a, "--job-size") == 0) {
            ok = parse_long(val, &v) && v >= 1 && v <= 10000000;
            cfg.job_size = (int32_t)v;
        } else if (strcmp(a, "--max-turns") == 0) {
            ok = parse_long(val, &max_turns) && max_turns >= 1;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            ok = parse_long(val, &v) && v >= 1 && v <= 600000;
            cfg.request_timeout_ms = (uint32_t)v;
        } else if (strcmp(a, "--link-lost-ms") == 0) {
            ok = parse_long(val, &v) && v >= 0 && v <= 86400000L;
            cfg.link_lost_ms = (uint32_t)v;
        } else {
            fprintf(stderr, "flatsat_board_posix: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "flatsat_board_posix: bad value for %s: %s\n", a, val);
            return 2;
        }
    }
    if (do_transcode) {
        return transcode((size_t)max_frame);
    }
    if ((path == NULL) == (fd < 0)) {
        fprintf(stderr, "flatsat_board_posix: give a TTY path or --fd N (one of them)\n");
        usage(stderr);
        return 2;
    }
    if (path != NULL) {
        fd = open(path, O_RDWR | O_NOCTTY);
        if (fd < 0) {
            fprintf(stderr, "flatsat_board_posix: cannot open %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    raw = make_raw((int)fd, baud);
    if (raw < 0) {
        fprintf(stderr, "flatsat_board_posix: cannot set %ld baud raw mode: %s\n", baud, strerror(errno));
        return 1;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    memset(&l, 0, sizeof l);
    l.fd_in = l.fd_out = (int)fd;
    l.read_wait_ms = 0;
    l.verbose = verbose;
    l.name = cfg.name;
    memset(&io, 0, sizeof io);
    io.read_byte = link_read_byte;
    io.write_bytes = link_write_bytes;
    io.millis = link_millis;
    io.idle = link_idle;
    io.log = link_log;
    io.reset = link_reset;
    io.ctx = &l;
    fsb_board_init(&board, &cfg, &io);

    /* fsb_board_run, plus the turn limit and a device that comes back */
    for (;;) {
        rc = fsb_board_poll(&board);
        if (rc == FSB_ERR_CLOSED && path != NULL && !g_stop) {
            /* unplugged (or a pty whose other side closed): open the same path again, then start over */
            fprintf(stderr, "%s: %s went away; opening it again every second\n", cfg.name, path);
            close((int)fd);
            fd = -1;
            while (!g_stop && fd < 0) {
                (void)poll(NULL, 0, 1000);
                fd = open(path, O_RDWR | O_NOCTTY);
                if (fd >= 0 && make_raw((int)fd, baud) < 0) {
                    close((int)fd);
                    fd = -1;
                }
            }
            if (fd < 0) {
                break; /* stopped by a signal while waiting */
            }
            l.fd_in = l.fd_out = (int)fd;
            l.pos = l.len = 0;
            fsb_board_restart(&board);
            continue;
        }
        if (rc == FSB_ERR_CLOSED || rc == FSB_ERR_VERSION || (rc == FSB_REFUSED && !board.started)) {
            break;
        }
        if (max_turns > 0 && board.stats.steps >= (uint32_t)max_turns && !board.step_owed) {
            rc = FSB_OK;
            break;
        }
    }

    fprintf(stderr,
            "%s: stopped (%s) turns=%" PRIu32 " steps=%" PRIu32 " requests=%" PRIu32 " acked=%" PRIu32
            " refused=%" PRIu32 " timeouts=%" PRIu32 " retries=%" PRIu32 " lost=%" PRIu32
            " unacked_steps=%" PRIu32 " pings=%" PRIu32 " restarts=%" PRIu32 " missed_waits=%" PRIu32
            " telemetry=%" PRIu32 " events=%" PRIu32
            " decode_errors=%" PRIu32 " bad_frames=%" PRIu32 " sheds=%" PRIu32 " hang_resets=%" PRIu32
            " power_cycles=%" PRIu32 " rail_resets=%" PRIu32 " dvfs_changes=%" PRIu32
            " jobs_submitted=%" PRIu32 " jobs_done=%" PRIu32 " jobs_lost=%" PRIu32 " jobs_checked=%" PRIu32
            " sdc_detected=%" PRIu32 " verdicts=%" PRIu32 " verdicts_dropped=%" PRIu32 " t_s=%" PRIu64 "\n",
            cfg.name, fsb_strerror(rc), board.stats.turns, board.stats.steps, board.stats.requests,
            board.stats.acked, board.stats.refused, board.stats.timeouts, board.stats.retries,
            board.stats.lost, board.stats.unacked_steps, board.stats.pings, board.stats.restarts,
            board.stats.missed_waits,
            board.stats.telemetry,
            board.stats.events, board.stats.decode_errors,
            board.rx.stats.bad_cobs + board.rx.stats.too_short + board.rx.stats.bad_crc + board.rx.stats.oversized,
            board.stats.sheds, board.stats.hang_resets, board.stats.power_cycles, board.stats.rail_resets,
            board.stats.dvfs_changes, board.stats.jobs_submitted, board.stats.jobs_done, board.stats.jobs_lost,
            board.stats.jobs_checked, board.stats.sdc_detected, board.stats.verdicts, board.stats.verdicts_dropped,
            board.t_ns / 1000000000u);
    if (path != NULL && fd >= 0) {
        close((int)fd);
    }
    /* a link that closed (or a signal) and the turn limit are normal ends; a protocol mismatch or
     * a refused hello is not */
    return (rc == FSB_ERR_CLOSED || rc == FSB_OK) ? 0 : 1;
}
