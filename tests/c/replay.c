/* Replay check for a stowage plan (plan.h + plan.c; see docs/c-header.md).
 *
 * Build against the header (force-included or named by PLAN_HEADER) and link plan.c:
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic -DPLAN_PREFIX=net -DPLAN_MACRO_PREFIX=NET \
 *       -DPLAN_HEADER='"out/plan.h"' tests/c/replay.c out/plan.c -o replay
 *   ./replay [out/weights.bin]
 * With -DPLAN_WEIGHTS_ARRAY (and weights.c linked) the blob is the C array instead of a file.
 *
 * It allocates one byte array per memory level and I/O region (sized by its extent), fills
 * every byte with poison, pre-fills inputs and weights at their home offset (inputs with a
 * signature, a byte pattern that differs per buffer and per position; weights with their
 * signature too, or, given weights.bin, with the blob, after checking each weight's CRC-32
 * against the weight table), and then runs the plan: for every step the 'before' transfers
 * (memmove, after checking the source holds the buffer's content), the "operator" (check the
 * content of every read buffer, write the signature of every written buffer), the 'after'
 * transfers; placements whose last step has passed are re-poisoned.  A tiled step runs its
 * stripes instead: row loads (checked rows of the home copy into the ring tile), the input
 * tiles checked row by row, the output tile written, row stores; a tensor's rows carry the
 * signature of its bytes in NCHW order, so rows written by stripes and whole tensors agree.
 * At the end every output must hold its signature at its home offset.  Any clobbered or
 * missing byte fails with the step and buffer id (exit 1).
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
static const unsigned char *blob; /* weights.bin, when given */
static uint64_t row_bytes_moved;
/* Table sizes as variables: a count of 0 in a comparison would be a -Wtype-limits warning. */
static const uint32_t num_weights = M(NUM_WEIGHTS), num_cascades = M(NUM_CASCADES), num_stripes = M(NUM_STRIPES),
                      num_transfers = M(NUM_TRANSFERS), num_row_addrs = M(NUM_ROW_ADDRS);

/* The byte buffer b must hold at position j: differs between buffers and along a buffer. */
static unsigned char sig(uint32_t b, uint64_t j)
{
    uint64_t x = ((uint64_t)b + 1u) * UINT64_C(0x9E3779B97F4A7C15) ^ (j * UINT64_C(0xBF58476D1CE4E5B9));
    x ^= x >> 31;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 29;
    return (unsigned char)(x & 0xFFu);
}

/* What byte j of buffer b holds when intact: the blob's bytes for a weight, else its signature. */
static unsigned char content(uint32_t b, uint64_t j)
{
    const T(buffer_t) *bf = &T(buffers)[b];
    if (blob && bf->kind == M(KIND_WEIGHT))
        return blob[bf->home_offset + j];
    return sig(b, j);
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

static void write_content(uint32_t buffer, uint32_t level, addr_t offset)
{
    addr_t n = T(buffers)[buffer].bytes, j;
    unsigned char *p = mem[level] + offset;
    for (j = 0; j < n; ++j)
        p[j] = content(buffer, j);
}

static void check_content(const char *what, uint32_t step, uint32_t buffer, uint32_t level, addr_t offset)
{
    addr_t n = T(buffers)[buffer].bytes, j;
    const unsigned char *p;
    check_range(what, step, buffer, level, offset, n);
    p = mem[level] + offset;
    for (j = 0; j < n; ++j)
        if (p[j] != content(buffer, j))
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
        if (t->kind > M(TRANSFER_STORE))
            fail("transfer", s, t->buffer, "has an unknown kind, transfer", k);
        check_content("transfer source of", s, t->buffer, t->src_level, t->src_offset);
        check_range("transfer destination of", s, t->buffer, t->dst_level, t->dst_offset, t->bytes);
        memmove(mem[t->dst_level] + t->dst_offset, mem[t->src_level] + t->src_offset, (size_t)t->bytes);
    }
}

/* -- tiled steps ----------------------------------------------------------------------- */
/* Address of byte x of channel c of the i-th row of tile (addr0, rows0, addr1), or, for rows by
   slot (row_addrs != NONE32), of the tile's i-th listed row address. */
static addr_t tile_addr(const T(cascade_tensor_t) *t, addr_t addr0, uint32_t rows0, addr_t addr1, uint32_t row_addrs,
                        uint32_t i, uint32_t c)
{
    addr_t row;
    if (row_addrs != M(NONE32)) {
        if ((uint64_t)row_addrs + i >= num_row_addrs)
            fail("tile row address table overrun:", 0, t->tensor_buffer, "index", (uint64_t)row_addrs + i);
        row = T(row_addrs)[row_addrs + i];
    } else {
        row = i < rows0 ? addr0 + (addr_t)i * t->row_stride : addr1 + (addr_t)(i - rows0) * t->row_stride;
    }
    return row + (addr_t)c * t->channel_stride;
}

/* Byte x of channel c of row r of a tensor, in NCHW order: its position in the whole tensor. */
static uint64_t nchw(const T(cascade_tensor_t) *t, uint32_t r, uint32_t c, uint64_t x)
{
    return (uint64_t)c * t->plane_bytes + (uint64_t)r * t->width_bytes + x;
}

/* check (write == 0) or write (write == 1) rows [lo, hi) of a tile with the tensor's signature */
static void tile_rows(const char *what, uint32_t s, const T(cascade_tensor_t) *t, uint32_t lo, uint32_t hi,
                      addr_t addr0, uint32_t rows0, addr_t addr1, uint32_t row_addrs, int write)
{
    uint32_t i, c;
    addr_t x;
    for (i = 0; i < hi - lo; ++i)
        for (c = 0; c < t->channels; ++c) {
            addr_t a = tile_addr(t, addr0, rows0, addr1, row_addrs, i, c);
            unsigned char *p;
            check_range(what, s, t->tensor_buffer, t->level, a, t->width_bytes);
            p = mem[t->level] + a;
            for (x = 0; x < t->width_bytes; ++x) {
                unsigned char want = sig(t->tensor_buffer, nchw(t, lo + i, c, x));
                if (write)
                    p[x] = want;
                else if (p[x] != want)
                    fail(what, s, t->tensor_buffer, "clobbered or missing byte of a row at offset", (uint64_t)a + x);
            }
        }
}

static void run_row_transfers(uint32_t s, uint32_t stripe, uint32_t begin, uint32_t end)
{
    uint32_t k, i, c;
    for (k = begin; k < end; ++k) {
        const T(row_transfer_t) *x = &T(row_transfers)[k];
        const T(cascade_tensor_t) *t = &T(cascade_tensors)[x->tensor];
        if (x->stripe != stripe)
            fail("row transfer table out of order:", s, t->tensor_buffer, "row transfer", k);
        if (x->kind == M(TRANSFER_LOAD)) {
            /* the home copy must hold the rows before they move */
            for (i = 0; i < x->hi - x->lo; ++i)
                for (c = 0; c < t->channels; ++c) {
                    addr_t h = x->home_addr + (addr_t)i * t->width_bytes + (addr_t)c * t->plane_bytes;
                    addr_t a = tile_addr(t, x->addr0, x->rows0, x->addr1, x->row_addrs, i, c), j;
                    check_range("row load source of", s, t->tensor_buffer, x->home_level, h, t->width_bytes);
                    check_range("row load destination of", s, t->tensor_buffer, x->level, a, t->width_bytes);
                    for (j = 0; j < t->width_bytes; ++j)
                        if (mem[x->home_level][h + j] != sig(t->tensor_buffer, nchw(t, x->lo + i, c, j)))
                            fail("row load source of", s, t->tensor_buffer, "clobbered or missing byte at offset",
                                 (uint64_t)h + j);
                    memmove(mem[x->level] + a, mem[x->home_level] + h, (size_t)t->width_bytes);
                }
        } else if (x->kind == M(TRANSFER_STORE)) {
            tile_rows("row store source of", s, t, x->lo, x->hi, x->addr0, x->rows0, x->addr1, x->row_addrs, 0);
            for (i = 0; i < x->hi - x->lo; ++i)
                for (c = 0; c < t->channels; ++c) {
                    addr_t h = x->home_addr + (addr_t)i * t->width_bytes + (addr_t)c * t->plane_bytes;
                    addr_t a = tile_addr(t, x->addr0, x->rows0, x->addr1, x->row_addrs, i, c);
                    check_range("row store destination of", s, t->tensor_buffer, x->home_level, h, t->width_bytes);
                    memmove(mem[x->home_level] + h, mem[x->level] + a, (size_t)t->width_bytes);
                }
        } else {
            fail("row transfer", s, t->tensor_buffer, "has an unknown kind, row transfer", k);
        }
        row_bytes_moved += (uint64_t)(x->hi - x->lo) * t->channels * t->width_bytes;
    }
}

/* 1 when buffer b is the holder of a ring (or streamed ring) of cascade k: no whole content */
static int is_ring(uint32_t k, uint32_t b)
{
    const T(cascade_t) *c = &T(cascades)[k];
    uint32_t i;
    for (i = c->tensors_begin; i < c->tensors_end; ++i)
        if (T(cascade_tensors)[i].buffer == b && T(cascade_tensors)[i].mode != M(HOLD_WHOLE))
            return 1;
    return 0;
}

static void run_cascade(uint32_t s, uint32_t k)
{
    const T(cascade_t) *c;
    uint32_t j, i;
    if (k >= num_cascades)
        fail("tiled step names an unknown cascade:", s, 0, "cascade", k);
    c = &T(cascades)[k];
    if (c->step != s)
        fail("cascade table out of order:", s, 0, "cascade", k);
    for (j = c->stripes_begin; j < c->stripes_end; ++j) {
        const T(stripe_t) *st = &T(stripes)[j];
        const T(tile_t) *tl = &T(tiles)[st->tiles_begin];
        const T(tile_t) *out = &tl[st->num_inputs];
        run_row_transfers(s, j, st->row_transfers_before, st->row_transfers_after);
        for (i = 0; i < st->num_inputs; ++i)
            tile_rows("stripe reads", s, &T(cascade_tensors)[tl[i].tensor], tl[i].lo, tl[i].hi, tl[i].addr0,
                      tl[i].rows0, tl[i].addr1, tl[i].row_addrs, 0);
        if (out->lo != st->out_lo || out->hi != st->out_hi)
            fail("stripe output tile differs from its rows:", s, T(cascade_tensors)[out->tensor].tensor_buffer,
                 "stripe", j);
        tile_rows("stripe writes", s, &T(cascade_tensors)[out->tensor], out->lo, out->hi, out->addr0, out->rows0,
                  out->addr1, out->row_addrs, 1);
        run_row_transfers(s, j, st->row_transfers_after, st->row_transfers_end);
    }
}

int main(int argc, char **argv)
{
    uint32_t l, b, s, i;
    uint64_t moved = 0;
    unsigned char *file_blob = NULL;
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
#ifdef PLAN_WEIGHTS_ARRAY
    blob = T(weight_blob);
    (void)argc;
    (void)argv;
#else
    if (argc > 1) {
        FILE *f = fopen(argv[1], "rb");
        long n;
        if (!f) {
            fprintf(stderr, "replay: cannot open %s\n", argv[1]);
            return 2;
        }
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        if (n < 0 || (uint64_t)n != (uint64_t)M(WEIGHT_BLOB_BYTES)) {
            fprintf(stderr, "replay: FAIL: %s has %ld bytes, the header says %llu\n", argv[1], n,
                    (unsigned long long)M(WEIGHT_BLOB_BYTES));
            return 1;
        }
        file_blob = (unsigned char *)malloc((size_t)n + 1u);
        if (!file_blob || fread(file_blob, 1, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "replay: cannot read %s\n", argv[1]);
            return 2;
        }
        fclose(f);
        blob = file_blob;
    }
#endif
    if (blob) {
        /* every weight's bytes, where the weight table says, hash to the table's checksum */
        for (i = 0; i < num_weights; ++i) {
            const T(weight_t) *w = &T(weights)[i];
            uint32_t h = 0xFFFFFFFFu;
            addr_t j;
            int k;
            if ((uint64_t)w->offset + w->bytes > (uint64_t)M(WEIGHT_BLOB_BYTES))
                fail("weight", 0, w->buffer, "ends beyond the blob at", (uint64_t)w->offset + w->bytes);
            for (j = 0; j < w->bytes; ++j) { /* CRC-32 (IEEE, reflected), bit by bit */
                h ^= blob[w->offset + j];
                for (k = 0; k < 8; ++k)
                    h = (h >> 1) ^ (0xEDB88320u & (0u - (h & 1u)));
            }
            if ((h ^ 0xFFFFFFFFu) != w->crc32)
                fail("weight", 0, w->buffer, "bytes in the blob do not match the table's CRC-32, offset", w->offset);
        }
    }
    for (b = 0; b < M(NUM_BUFFERS); ++b) {
        const T(buffer_t) *bf = &T(buffers)[b];
        if (bf->home_level == M(LEVEL_NONE) || (bf->kind != M(KIND_INPUT) && bf->kind != M(KIND_WEIGHT)))
            continue;
        check_range("home of", 0, b, bf->home_level, bf->home_offset, bf->bytes);
        write_content(b, bf->home_level, bf->home_offset);
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
            check_content("operator reads", s, ops[i].buffer, ops[i].level, ops[i].offset);
        for (i = st->num_reads; i < st->num_reads + st->num_writes; ++i) {
            if (ops[i].level != M(COMPUTE_LEVEL))
                fail("operator writes", s, ops[i].buffer, "outside the compute level, in level", ops[i].level);
            check_range("operator writes", s, ops[i].buffer, ops[i].level, ops[i].offset,
                        T(buffers)[ops[i].buffer].bytes);
            if (st->cascade == M(NONE32))
                write_content(ops[i].buffer, ops[i].level, ops[i].offset);
        }
        if (st->cascade != M(NONE32)) {
            run_cascade(s, st->cascade);
            /* every row of a whole result was written by some stripe */
            for (i = st->num_reads; i < st->num_reads + st->num_writes; ++i)
                if (!is_ring(st->cascade, ops[i].buffer))
                    check_content("tiled step result", s, ops[i].buffer, ops[i].level, ops[i].offset);
        }
        run_transfers(s, st->transfers_after, st->transfers_end);
    }
    for (i = 0; i < num_transfers; ++i)
        moved += T(transfers)[i].bytes;
    for (b = 0; b < M(NUM_BUFFERS); ++b) {
        const T(buffer_t) *bf = &T(buffers)[b];
        if (bf->kind != M(KIND_OUTPUT))
            continue;
        if (bf->home_level == M(LEVEL_NONE))
            fail("graph output", M(NUM_STEPS), b, "has no home level", 0);
        check_content("graph output at home:", M(NUM_STEPS), b, bf->home_level, bf->home_offset);
    }
    for (l = 0; l < M(NUM_LEVELS); ++l)
        free(mem[l]);
    free(file_blob);
    printf("replay ok: %lu steps, %lu transfers, %llu bytes moved", (unsigned long)M(NUM_STEPS),
           (unsigned long)M(NUM_TRANSFERS), (unsigned long long)moved);
    if (num_stripes > 0)
        printf("; %lu stripes, %lu row transfers, %llu row bytes moved", (unsigned long)M(NUM_STRIPES),
               (unsigned long)M(NUM_ROW_TRANSFERS), (unsigned long long)row_bytes_moved);
    printf("%s\n", blob ? "; weights checked" : "");
    return 0;
}
