/* Replay check for a stowage plan header (see docs/c-header.md).
 *
 * Build (the header is either force-included or named by PLAN_HEADER):
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic -DPLAN_PREFIX=net -DPLAN_MACRO_PREFIX=NET \
 *       -DPLAN_HEADER='"out/plan.h"' tests/c/replay.c -o replay
 *
 * It allocates one byte array per memory level (sized by the level's used extent), fills every
 * byte with poison, pre-fills inputs and weights with their signature at their home offset, and
 * then runs the plan: for every step the 'before' transfers (memmove, after checking the source
 * holds the buffer's signature), the "operator" (check the signature of every read buffer, write
 * the signature of every written buffer), the 'after' transfers, and finally re-poisons every
 * placement whose last step has passed.  At the end every output must hold its signature at its
 * home offset.  Any clobbered or missing byte fails with the step and buffer id (exit 1).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PLAN_HEADER
#include PLAN_HEADER
#endif

#if !defined(PLAN_PREFIX) || !defined(PLAN_MACRO_PREFIX)
#error "define PLAN_PREFIX (the header's table prefix) and PLAN_MACRO_PREFIX (its macro prefix)"
#endif

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define T(name) CAT(PLAN_PREFIX, name)       /* table or type: net_steps */
#define M(name) CAT(PLAN_MACRO_PREFIX, name) /* macro: NET_NUM_STEPS */

typedef T(addr_t) addr_t;

static unsigned char *mem[M(NUM_LEVELS) > 0 ? M(NUM_LEVELS) : 1];

/* The byte buffer b must hold at position j: differs between buffers and along a buffer. */
static unsigned char sig(uint32_t b, uint64_t j)
{
    uint64_t x = ((uint64_t)b + 1u) * UINT64_C(0x9E3779B97F4A7C15) ^ (j * UINT64_C(0xBF58476D1CE4E5B9));
    x ^= x >> 31;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 29;
    return (unsigned char)(x & 0xFFu);
}

static unsigned char poison(uint32_t step) { return (unsigned char)(0xA5u ^ (step * 17u)); }

static void fail(const char *what, uint32_t step, uint32_t buffer, const char *detail, uint64_t at)
{
    const char *name = buffer < M(NUM_BUFFERS) ? T(buffer_names)[buffer] : "?";
    fprintf(stderr, "replay: FAIL at step %lu: %s buffer %lu (%s): %s %llu\n", (unsigned long)step, what,
            (unsigned long)buffer, name, detail, (unsigned long long)at);
    exit(1);
}

static void check_range(const char *what, uint32_t step, uint32_t buffer, uint32_t level, addr_t offset,
                        addr_t bytes)
{
    if (level >= M(NUM_LEVELS))
        fail(what, step, buffer, "unknown level", level);
    if ((uint64_t)offset + bytes > (uint64_t)T(levels)[level].extent)
        fail(what, step, buffer, "range ends beyond the level's extent at", (uint64_t)offset + bytes);
}

static void write_sig(uint32_t buffer, uint32_t level, addr_t offset)
{
    addr_t n = T(buffers)[buffer].bytes, j;
    unsigned char *p = mem[level] + offset;
    for (j = 0; j < n; ++j)
        p[j] = sig(buffer, j);
}

static void check_sig(const char *what, uint32_t step, uint32_t buffer, uint32_t level, addr_t offset)
{
    addr_t n = T(buffers)[buffer].bytes, j;
    const unsigned char *p;
    check_range(what, step, buffer, level, offset, n);
    p = mem[level] + offset;
    for (j = 0; j < n; ++j)
        if (p[j] != sig(buffer, j))
            fail(what, step, buffer, "clobbered or missing byte at offset", (uint64_t)offset + j);
}

static void run_transfers(uint32_t s, uint32_t begin, uint32_t end)
{
    uint32_t k;
    for (k = begin; k < end; ++k) {
        const T(transfer_t) *t = &T(transfers)[k];
        if (t->step != s)
            fail("transfer table out of order:", s, t->buffer, "transfer index", k);
        if (t->bytes != T(buffers)[t->buffer].bytes)
            fail("transfer", s, t->buffer, "size differs from the buffer's, transfer", k);
        check_sig("transfer source of", s, t->buffer, t->src_level, t->src_offset);
        check_range("transfer destination of", s, t->buffer, t->dst_level, t->dst_offset, t->bytes);
        memmove(mem[t->dst_level] + t->dst_offset, mem[t->src_level] + t->src_offset, (size_t)t->bytes);
    }
}

int main(void)
{
    uint32_t l, b, s, i;
    uint64_t moved = 0;
    for (l = 0; l < M(NUM_LEVELS); ++l) {
        const T(level_t) *lv = &T(levels)[l];
        if (lv->bounded && lv->extent > lv->capacity) {
            fprintf(stderr, "replay: FAIL: level %s uses %llu bytes, capacity %llu\n", T(level_names)[l],
                    (unsigned long long)lv->extent, (unsigned long long)lv->capacity);
            return 1;
        }
        mem[l] = (unsigned char *)malloc((size_t)lv->extent + 1u);
        if (!mem[l]) {
            fprintf(stderr, "replay: cannot allocate %llu bytes\n", (unsigned long long)lv->extent);
            return 2;
        }
        memset(mem[l], poison(0), (size_t)lv->extent + 1u);
    }
    for (b = 0; b < M(NUM_BUFFERS); ++b) {
        const T(buffer_t) *bf = &T(buffers)[b];
        if (bf->home_level == M(LEVEL_NONE) || (bf->kind != M(KIND_INPUT) && bf->kind != M(KIND_WEIGHT)))
            continue;
        check_range("home of", 0, b, bf->home_level, bf->home_offset, bf->bytes);
        write_sig(b, bf->home_level, bf->home_offset);
    }
    for (s = 0; s < M(NUM_STEPS); ++s) {
        const T(step_t) *st = &T(steps)[s];
        const T(operand_t) *ops = &T(operands)[st->operands_begin];
        /* Memory freed after step s-1 is poisoned before step s touches anything. */
        for (i = 0; i < M(NUM_PLACEMENTS); ++i) {
            const T(placement_t) *p = &T(placements)[i];
            if (s > 0 && p->last == s - 1) {
                addr_t n = T(buffers)[p->buffer].bytes;
                check_range("placement of", s, p->buffer, p->level, p->offset, n);
                memset(mem[p->level] + p->offset, poison(s), (size_t)n);
            }
        }
        run_transfers(s, st->transfers_before, st->transfers_after);
        for (i = 0; i < st->num_reads; ++i)
            check_sig("operator reads", s, ops[i].buffer, ops[i].level, ops[i].offset);
        for (i = st->num_reads; i < st->num_reads + st->num_writes; ++i) {
            if (ops[i].level != M(COMPUTE_LEVEL))
                fail("operator writes", s, ops[i].buffer, "outside the compute level, in level", ops[i].level);
            check_range("operator writes", s, ops[i].buffer, ops[i].level, ops[i].offset,
                        T(buffers)[ops[i].buffer].bytes);
            write_sig(ops[i].buffer, ops[i].level, ops[i].offset);
        }
        run_transfers(s, st->transfers_after, st->transfers_end);
    }
    for (i = 0; i < M(NUM_TRANSFERS); ++i)
        moved += T(transfers)[i].bytes;
    for (b = 0; b < M(NUM_BUFFERS); ++b) {
        const T(buffer_t) *bf = &T(buffers)[b];
        if (bf->kind != M(KIND_OUTPUT))
            continue;
        if (bf->home_level == M(LEVEL_NONE))
            fail("graph output", M(NUM_STEPS), b, "has no home level", 0);
        check_sig("graph output at home:", M(NUM_STEPS), b, bf->home_level, bf->home_offset);
    }
    for (l = 0; l < M(NUM_LEVELS); ++l)
        free(mem[l]);
    printf("replay ok: %lu steps, %lu transfers, %llu bytes moved\n", (unsigned long)M(NUM_STEPS),
           (unsigned long)M(NUM_TRANSFERS), (unsigned long long)moved);
    return 0;
}
