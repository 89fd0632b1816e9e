/*
 * fuzz_common.h — what the libFuzzer harnesses of libcasyncio share: a
 * reader that decodes the fuzzer's bytes into operations, and a check that
 * turns a disagreement with the harness's model into a crash libFuzzer
 * reports (and saves the input of).
 *
 * An exhausted input reads as zeros, so every input decodes to a finite,
 * valid sequence of operations.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fin {
    const uint8_t *p;
    size_t n;
};

static inline int fin_more(const struct fin *in)
{
    return in->n > 0;
}

static inline uint8_t fin_u8(struct fin *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fin_u16(struct fin *in)
{
    uint16_t lo = fin_u8(in);
    return (uint16_t)(lo | (uint16_t)fin_u8(in) << 8);
}

static inline uint32_t fin_u32(struct fin *in)
{
    uint32_t lo = fin_u16(in);
    return lo | (uint32_t)fin_u16(in) << 16;
}

static inline uint64_t fin_u64(struct fin *in)
{
    uint64_t lo = fin_u32(in);
    return lo | (uint64_t)fin_u32(in) << 32;
}

/* A disagreement with the model: print where and why, then abort so that
 * libFuzzer keeps the input as a crash. */
#define FUZZ_CHECK(cond, ...)                                               \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: model check failed: %s: ", __FILE__,    \
                    __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            abort();                                                        \
        }                                                                   \
    } while (0)

#endif /* FUZZ_COMMON_H */
