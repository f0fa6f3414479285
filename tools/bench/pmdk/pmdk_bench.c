// SPDX-License-Identifier: GPL-2.0
/*
 * The PMDK peer of memkit-bench: the same transactions as the memkit engine's
 * host benchmark, done with libpmemobj's transactions (undo log):
 *
 *	pmemobj_tx_begin
 *	for each range: pmemobj_tx_add_range (snapshot); memcpy (the new bytes)
 *	pmemobj_tx_commit; pmemobj_tx_end
 *
 * on a pool whose root object is the data region.  On the host, run with
 * PMEM_IS_PMEM_FORCE=1 on a DRAM-backed file (/dev/shm) so that libpmem flushes with
 * clwb/clflushopt and drains with sfence, as on real persistent memory, instead of
 * calling msync.  In the guest, on a DAX-mounted ext4, libpmem decides for itself:
 * MAP_SYNC on synchronous pmem, msync (a device flush) on virtio-pmem.
 *
 * mkb_pmdk_run only reads its struct: several threads may run transactions on one
 * pool at once, on disjoint ranges (libpmemobj's transaction state is per thread;
 * transactions are not isolated from each other).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpmem.h>
#include <libpmemobj.h>

#include "pmdk_bench.h"

struct mkb_pmdk {
	PMEMobjpool *pop;
	PMEMoid root;
	char *base;
	size_t size;
};

int mkb_pmdk_open(const char *path, size_t pool_size, size_t data_size, struct mkb_pmdk **out)
{
	struct mkb_pmdk *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->pop = pmemobj_create(path, "memkit-bench", pool_size, 0600);
	if (!b->pop) {
		int err = errno ? errno : EIO;

		free(b);
		return -err;
	}
	/* The root object is allocated zeroed (written, so its pages are faulted in). */
	b->root = pmemobj_root(b->pop, data_size);
	if (OID_IS_NULL(b->root)) {
		int err = errno ? errno : ENOMEM;

		pmemobj_close(b->pop);
		free(b);
		return -err;
	}
	b->base = pmemobj_direct(b->root);
	b->size = data_size;
	*out = b;
	return 0;
}

const char *mkb_pmdk_errormsg(void)
{
	return pmemobj_errormsg();
}

int mkb_pmdk_is_pmem(const struct mkb_pmdk *b)
{
	return pmem_is_pmem(b->base, b->size);
}

int mkb_pmdk_run(const struct mkb_pmdk *b, const uint64_t *offsets, size_t nranges,
		 size_t len, const uint8_t *src, size_t ntx)
{
	for (size_t t = 0; t < ntx; t++) {
		const uint64_t *off = offsets + t * nranges;

		if (pmemobj_tx_begin(b->pop, NULL, TX_PARAM_NONE) != 0) {
			int err = errno ? errno : EIO;

			pmemobj_tx_end();
			return -err;
		}
		for (size_t r = 0; r < nranges; r++) {
			int err;

			if (off[r] > b->size || len > b->size - off[r]) {
				pmemobj_tx_abort(EINVAL);
				pmemobj_tx_end();
				return -EINVAL;
			}
			err = pmemobj_tx_add_range(b->root, off[r], len);
			if (err) {
				/* The transaction is aborted already. */
				pmemobj_tx_end();
				return -err;
			}
			memcpy(b->base + off[r], src, len);
		}
		pmemobj_tx_commit();
		{
			int err = pmemobj_tx_end();

			if (err)
				return -err;
		}
	}
	return 0;
}

int mkb_pmdk_read(const struct mkb_pmdk *b, uint64_t off, void *buf, size_t len)
{
	if (off > b->size || len > b->size - off)
		return -EINVAL;
	memcpy(buf, b->base + off, len);
	return 0;
}

void mkb_pmdk_close(struct mkb_pmdk *b)
{
	pmemobj_close(b->pop);
	free(b);
}
