/* SPDX-License-Identifier: GPL-2.0 */
/* The PMDK peer of memkit-bench (pmdk_bench.c); every int is 0 or -errno. */
#ifndef MEMKIT_PMDK_BENCH_H
#define MEMKIT_PMDK_BENCH_H

#include <stddef.h>
#include <stdint.h>

struct mkb_pmdk;

/* Creates the pool file `path` (must not exist) with a zeroed root object of
 * `data_size` bytes: the data region the transactions write. */
int mkb_pmdk_open(const char *path, size_t pool_size, size_t data_size, struct mkb_pmdk **out);
/* libpmemobj's message for the last failure. */
const char *mkb_pmdk_errormsg(void);
/* pmem_is_pmem() of the data region: 1 if libpmem flushes with CPU instructions. */
int mkb_pmdk_is_pmem(const struct mkb_pmdk *b);
/* Runs `ntx` transactions; transaction t writes `len` bytes of `src` at each of
 * offsets[t * nranges .. (t + 1) * nranges] of the data region. */
int mkb_pmdk_run(const struct mkb_pmdk *b, const uint64_t *offsets, size_t nranges,
		 size_t len, const uint8_t *src, size_t ntx);
/* Copies bytes of the data region out (for checking that the writes landed). */
int mkb_pmdk_read(const struct mkb_pmdk *b, uint64_t off, void *buf, size_t len);
void mkb_pmdk_close(struct mkb_pmdk *b);

#endif
