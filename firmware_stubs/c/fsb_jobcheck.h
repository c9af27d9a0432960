/*
 * fsb_jobcheck.h - recompute an accelerator job's result and its digest on the board (part of the core).
 *
 * The recipe is docs/protocol-accelerator.md, "Event accel.job.done": the inputs come from the job's
 * seed, the result is R = max(0, A x B) for two 16 x 16 int8 matrices, and the digest is SHA-256 of R
 * as little-endian int32, row-major, in lower-case hex. A board that recomputes it and compares with
 * the reported digest detects a silent data corruption (a bit flipped in R before the digest was
 * taken). firmware_stubs/jobcheck.py is the same recipe in Python; the tests hold the two together.
 *
 * C99, no malloc, no globals, no OS calls. Cost on a Cortex-M3: 512 bytes of inputs and a 108-byte
 * SHA-256 state on the caller's stack (or in its struct), 4096 multiply-adds and 16 SHA-256 blocks.
 */
#ifndef FSB_JOBCHECK_H
#define FSB_JOBCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FSB_RESULT_DIM 16     /* n: the result is n x n (accel result_dim) */
#define FSB_DIGEST_HEX_LEN 64 /* SHA-256 in hex, without the NUL */

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------------ */

typedef struct fsb_sha256 {
    uint32_t h[8];
    uint64_t bytes; /* message length so far */
    uint8_t block[64];
    size_t fill; /* bytes in block */
} fsb_sha256;

void fsb_sha256_init(fsb_sha256 *s);
void fsb_sha256_update(fsb_sha256 *s, const uint8_t *data, size_t len);
void fsb_sha256_final(fsb_sha256 *s, uint8_t out[32]);

/* ---- the job's result ------------------------------------------------------------------------- */

/* The salt of a job kind: 1 inference, 2 training, 0 for a kind this recipe does not know. */
uint32_t fsb_job_salt(const char *kind, size_t kind_len);

/* The result matrix R (n x n int32, row-major) of a job with this seed and salt. */
void fsb_job_result(uint64_t seed, uint32_t salt, int32_t out[FSB_RESULT_DIM * FSB_RESULT_DIM]);

/* The documented digest of that result: 64 lower-case hex characters and a NUL into hex[65]. Streams R
 * into SHA-256 element by element, so it needs no result buffer. */
void fsb_job_digest_hex(uint64_t seed, uint32_t salt, char hex[FSB_DIGEST_HEX_LEN + 1]);

/* True when `digest` (len characters, hex in either case) is the digest of the job's true result. */
bool fsb_job_digest_matches(uint64_t seed, uint32_t salt, const char *digest, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* FSB_JOBCHECK_H */
