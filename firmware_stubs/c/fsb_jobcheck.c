/*
 * fsb_jobcheck.c - the job result and its SHA-256 digest, recomputed on the board (see fsb_jobcheck.h).
 *
 * SHA-256 is written out here rather than taken from a library: the core must build with nothing but a
 * C99 compiler and <string.h> on any MCU, and the ~100 lines below are the FIPS 180-4 algorithm as
 * published, checked by the tests against Python's hashlib on random inputs and the standard vectors.
 */
#include "fsb_jobcheck.h"

#include <string.h>

/* ============================================================================================== */
/* SHA-256                                                                                        */
/* ============================================================================================== */

static const uint32_t K256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32u - n));
}

static void sha256_block(fsb_sha256 *s, const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, h;
    unsigned i;
    for (i = 0; i < 16u; i++) {
        w[i] = ((uint32_t)p[4u * i] << 24) | ((uint32_t)p[4u * i + 1u] << 16) | ((uint32_t)p[4u * i + 2u] << 8) |
               (uint32_t)p[4u * i + 3u];
    }
    for (i = 16; i < 64u; i++) {
        uint32_t s0 = rotr(w[i - 15u], 7) ^ rotr(w[i - 15u], 18) ^ (w[i - 15u] >> 3);
        uint32_t s1 = rotr(w[i - 2u], 17) ^ rotr(w[i - 2u], 19) ^ (w[i - 2u] >> 10);
        w[i] = w[i - 16u] + s0 + w[i - 7u] + s1;
    }
    a = s->h[0];
    b = s->h[1];
    c = s->h[2];
    d = s->h[3];
    e = s->h[4];
    f = s->h[5];
    g = s->h[6];
    h = s->h[7];
    for (i = 0; i < 64u; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void fsb_sha256_init(fsb_sha256 *s)
{
    static const uint32_t H0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, H0, sizeof H0);
    s->bytes = 0;
    s->fill = 0;
}

void fsb_sha256_update(fsb_sha256 *s, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t n = 64u - s->fill;
        if (n > len) {
            n = len;
        }
        memcpy(s->block + s->fill, data, n);
        s->fill += n;
        s->bytes += n;
        data += n;
        len -= n;
        if (s->fill == 64u) {
            sha256_block(s, s->block);
            s->fill = 0;
        }
    }
}

void fsb_sha256_final(fsb_sha256 *s, uint8_t out[32])
{
    uint64_t bits = s->bytes * 8u;
    unsigned i;
    s->block[s->fill++] = 0x80u;
    if (s->fill > 56u) {
        memset(s->block + s->fill, 0, 64u - s->fill);
        sha256_block(s, s->block);
        s->fill = 0;
    }
    memset(s->block + s->fill, 0, 56u - s->fill);
    for (i = 0; i < 8u; i++) {
        s->block[56u + i] = (uint8_t)(bits >> (56u - 8u * i));
    }
    sha256_block(s, s->block);
    for (i = 0; i < 8u; i++) {
        out[4u * i] = (uint8_t)(s->h[i] >> 24);
        out[4u * i + 1u] = (uint8_t)(s->h[i] >> 16);
        out[4u * i + 2u] = (uint8_t)(s->h[i] >> 8);
        out[4u * i + 3u] = (uint8_t)s->h[i];
    }
}

/* ============================================================================================== */
/* The job                                                                                        */
/* ============================================================================================== */

#define N FSB_RESULT_DIM

uint32_t fsb_job_salt(const char *kind, size_t kind_len)
{
    if (kind_len == 9u && memcmp(kind, "inference", 9) == 0) {
        return 1;
    }
    if (kind_len == 8u && memcmp(kind, "training", 8) == 0) {
        return 2;
    }
    return 0;
}

/* v[0 .. 2n^2): the inputs, -127..127, all arithmetic on wrapping uint64 (the document's recipe). */
static void job_inputs(uint64_t seed, uint32_t salt, int8_t v[2 * N * N])
{
    uint32_t k;
    for (k = 1; k <= 2u * N * N; k++) {
        uint64_t x = seed * 6364136223846793005ull + (uint64_t)k * 1442695040888963407ull + salt;
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        /* x >> 40 fits 24 bits: a 32-bit remainder is the same and costs no 64-bit division */
        v[k - 1u] = (int8_t)((int32_t)((uint32_t)(x >> 40) % 255u) - 127);
    }
}

/* R[i][j] = max(0, sum_k A[i][k] B[k][j]); |sum| <= 16 * 127 * 127 < 2^18, so int32 is exact. */
static int32_t job_element(const int8_t v[2 * N * N], unsigned i, unsigned j)
{
    int32_t acc = 0;
    unsigned k;
    for (k = 0; k < N; k++) {
        acc += (int32_t)v[i * N + k] * (int32_t)v[N * N + k * N + j];
    }
    return acc > 0 ? acc : 0;
}

void fsb_job_result(uint64_t seed, uint32_t salt, int32_t out[N * N])
{
    int8_t v[2 * N * N];
    unsigned i, j;
    job_inputs(seed, salt, v);
    for (i = 0; i < N; i++) {
        for (j = 0; j < N; j++) {
            out[i * N + j] = job_element(v, i, j);
        }
    }
}

void fsb_job_digest_hex(uint64_t seed, uint32_t salt, char hex[FSB_DIGEST_HEX_LEN + 1])
{
    static const char DIGITS[] = "0123456789abcdef";
    int8_t v[2 * N * N];
    fsb_sha256 s;
    uint8_t out[32];
    unsigned i, j;
    job_inputs(seed, salt, v);
    fsb_sha256_init(&s);
    for (i = 0; i < N; i++) {
        for (j = 0; j < N; j++) {
            uint32_t r = (uint32_t)job_element(v, i, j);
            uint8_t le[4];
            le[0] = (uint8_t)r;
            le[1] = (uint8_t)(r >> 8);
            le[2] = (uint8_t)(r >> 16);
            le[3] = (uint8_t)(r >> 24);
            fsb_sha256_update(&s, le, 4);
        }
    }
    fsb_sha256_final(&s, out);
    for (i = 0; i < 32u; i++) {
        hex[2u * i] = DIGITS[out[i] >> 4];
        hex[2u * i + 1u] = DIGITS[out[i] & 0x0Fu];
    }
    hex[FSB_DIGEST_HEX_LEN] = '\0';
}

bool fsb_job_digest_matches(uint64_t seed, uint32_t salt, const char *digest, size_t len)
{
    char want[FSB_DIGEST_HEX_LEN + 1];
    size_t i;
    if (len != FSB_DIGEST_HEX_LEN) {
        return false;
    }
    fsb_job_digest_hex(seed, salt, want);
    for (i = 0; i < len; i++) {
        char c = digest[i];
        if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != want[i]) {
            return false;
        }
    }
    return true;
}
