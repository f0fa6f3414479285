// SPDX-License-Identifier: GPL-2.0
/*
 * memkit's C edge: the few kernel interfaces Rust-for-Linux 7.3 has no binding or
 * abstraction for.  Each function is a thin wrapper; the Rust side (rust/dax.rs)
 * declares them and states the rules for calling them.
 *
 * - DAX: open a persistent-memory block device by path, claim it, and map it with
 *   dax_direct_access (fs_dax_get_by_bdev and the dax_* functions are not in
 *   kernel::bindings);
 * - persistence: memcpy_flushcache (cache-bypassing stores), pmem_wmb (sfence), and a
 *   device flush for DAX mappings that are not synchronous (virtio-pmem);
 * - machine-check-safe reads (copy_mc_to_kernel);
 * - the kernel's CRC-32C (crc32c(), the CPU's instruction where the kernel has
 *   CONFIG_CRC_OPTIMIZATIONS) and whether it is that one (crc32_optimizations()),
 *   which 7.3's bindings do not include;
 * - string module parameters, which the Rust module! macro does not support;
 * - region ids: DEFINE_IDA is a macro;
 * - checkpoint regions (rust/ckpt.rs): PG_dirty, the lock and the DMA pins of a
 *   page's folio, and a page copied to or from a kernel mapping (inline functions).
 *
 * What 7.3's bindings do reach is called from Rust directly (capable,
 * get_random_bytes, unmap_mapping_range, destroy_workqueue,
 * clean_record_shared_mapping_range), and the vm_operations_structs are Rust
 * statics (rust/mm.rs).
 */
#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <linux/dax.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/idr.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/page-flags.h>
#include <linux/pagemap.h>
#include <linux/moduleparam.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "helpers.h"

/*
 * The ABI and the logic shared with the tools are defined in 4 KiB pages, and the
 * copies below move PAGE_SIZE bytes into buffers sized by them (rust/edge.rs asserts
 * the same on the Rust side; Kbuild refuses other architectures first).
 */
static_assert(PAGE_SIZE == 4096, "memkit needs 4 KiB pages");

static char *journal_dev;
module_param(journal_dev, charp, 0444);
MODULE_PARM_DESC(journal_dev, "DAX block device to attach the journal to at load (e.g. /dev/pmem0)");

static char *commit_mode = "coalesced";
module_param(commit_mode, charp, 0444);
MODULE_PARM_DESC(commit_mode, "journal commit protocol: coalesced (one barrier per commit) or strict (two)");

static char *group_commit = "auto";
module_param(group_commit, charp, 0444);
MODULE_PARM_DESC(group_commit, "journal: auto (group commit where a barrier is a device flush, each writer its own where DAX is synchronous), always or never");

const char *memkit_param_journal_dev(void)
{
	return journal_dev;
}

const char *memkit_param_commit_mode(void)
{
	return commit_mode;
}

const char *memkit_param_group_commit(void)
{
	return group_commit;
}

/* Mirrored by `RawDax` in rust/dax.rs. */
struct memkit_dax {
	struct file *bdev_file;
	struct dax_device *dax_dev;
	void *kaddr;
	u64 size;
	bool sync;
	u32 dev_major;
	u32 dev_minor;
};

/* The holder that claims the block device and its DAX device while attached. */
static char memkit_dax_holder;

/*
 * Opens @path exclusively and maps the whole device.  Returns 0, -ENOTBLK (not a
 * block device), -EOPNOTSUPP (no DAX), -EBUSY (claimed by someone else), or the error
 * of the open or of dax_direct_access.
 */
int memkit_dax_open(const char *path, struct memkit_dax *d)
{
	struct block_device *bdev;
	u64 start_off, size;
	long pages, avail;
	void *kaddr;
	int id, err;

	memset(d, 0, sizeof(*d));
	d->bdev_file = bdev_file_open_by_path(path, BLK_OPEN_READ | BLK_OPEN_WRITE,
					      &memkit_dax_holder, NULL);
	if (IS_ERR(d->bdev_file)) {
		err = PTR_ERR(d->bdev_file);
		d->bdev_file = NULL;
		return err;
	}
	bdev = file_bdev(d->bdev_file);
	d->dev_major = MAJOR(bdev->bd_dev);
	d->dev_minor = MINOR(bdev->bd_dev);
	d->dax_dev = fs_dax_get_by_bdev(bdev, &start_off, &memkit_dax_holder, NULL);
	if (!d->dax_dev) {
		err = -EOPNOTSUPP;
		goto put_bdev;
	}
	size = bdev_nr_bytes(bdev);
	pages = size >> PAGE_SHIFT;
	id = dax_read_lock();
	avail = dax_direct_access(d->dax_dev, start_off >> PAGE_SHIFT, pages, DAX_ACCESS,
				  &kaddr, NULL);
	dax_read_unlock(id);
	if (avail < 0) {
		err = avail;
		goto put_dax;
	}
	/* A device mapped in pieces is used up to its first discontinuity. */
	d->kaddr = kaddr;
	d->size = (u64)min(avail, pages) << PAGE_SHIFT;
	d->sync = dax_synchronous(d->dax_dev);
	return 0;

put_dax:
	fs_put_dax(d->dax_dev, &memkit_dax_holder);
	d->dax_dev = NULL;
put_bdev:
	bdev_fput(d->bdev_file);
	d->bdev_file = NULL;
	return err;
}

void memkit_dax_close(struct memkit_dax *d)
{
	if (d->dax_dev)
		fs_put_dax(d->dax_dev, &memkit_dax_holder);
	if (d->bdev_file)
		bdev_fput(d->bdev_file);
	memset(d, 0, sizeof(*d));
}

/* The DAX read lock keeps the device from going away; returns its cookie. */
int memkit_dax_lock(void)
{
	return dax_read_lock();
}

void memkit_dax_unlock(int id)
{
	dax_read_unlock(id);
}

bool memkit_dax_alive(const struct memkit_dax *d)
{
	return dax_alive(d->dax_dev);
}

/* Stores that bypass the cache (or are written back): durable after the next fence. */
void memkit_pmem_copy(void *dst, const void *src, size_t len)
{
	memcpy_flushcache(dst, src, len);
}

/* Reads, surviving machine checks on poisoned media: 0 or -EIO. */
int memkit_pmem_read(void *dst, const void *src, size_t len)
{
	return copy_mc_to_kernel(dst, src, len) ? -EIO : 0;
}

/*
 * CRC-32C of p[0..len) appended to the finished checksum crc of the bytes before
 * them (crc32c() works on the unfinished register: inverted on the way in and out).
 */
u32 memkit_crc32c_append(u32 crc, const void *p, size_t len)
{
	return ~crc32c(~crc, p, len);
}

/*
 * Whether crc32c() runs on the CPU's CRC instructions.  Without
 * CONFIG_CRC_OPTIMIZATIONS (or on a CPU without them) it is the generic code, one
 * table lookup per byte; crc32_optimizations() is an inline returning 0 when the
 * kernel has no arch CRC code at all.
 */
bool memkit_crc32c_accelerated(void)
{
	return crc32_optimizations() & CRC32C_OPTIMIZATION;
}

/*
 * The persistence barrier: orders and completes the flushed stores, and asks the
 * device to flush when its DAX mapping is not synchronous.
 */
int memkit_pmem_fence(const struct memkit_dax *d)
{
	pmem_wmb();
	if (d->sync)
		return 0;
	return blkdev_issue_flush(file_bdev(d->bdev_file));
}

/*
 * Region ids: the page-offset windows of rmem and ckpt regions (rust/edge.rs).  An
 * id is freed with its region and reused, so that creating and closing regions in a
 * loop never runs out of them.  The IDA frees its memory as it empties.
 */
static DEFINE_IDA(memkit_region_ids);

int memkit_region_id_alloc(unsigned int max)
{
	return ida_alloc_range(&memkit_region_ids, 1, max, GFP_KERNEL_ACCOUNT);
}

void memkit_region_id_free(unsigned int id)
{
	ida_free(&memkit_region_ids, id);
}

bool memkit_page_dirty(struct page *page)
{
	return folio_test_dirty(page_folio(page));
}

bool memkit_page_test_clear_dirty(struct page *page)
{
	struct folio *folio = page_folio(page);

	/*
	 * A plain read first: most pages are clean, and the locked read-modify-write
	 * costs far more. A flag set just after the read is found by the next collect.
	 */
	return folio_test_dirty(folio) && folio_test_clear_dirty(folio);
}

/*
 * The recording mode (rust/ckpt.rs): page_mkwrite returns with the folio locked
 * (our pages have no ->mapping, so do_page_mkwrite cannot lock it for us), and the
 * fault keeps it locked until the PTE is writable; a collect waits for such faults
 * by taking and dropping the lock.  folio_lock and folio_maybe_dma_pinned are
 * inline.
 */
void memkit_page_lock(struct page *page)
{
	folio_lock(page_folio(page));
}

void memkit_page_wait_unlocked(struct page *page)
{
	struct folio *folio = page_folio(page);

	folio_lock(folio);
	folio_unlock(folio);
}

bool memkit_page_maybe_pinned(struct page *page)
{
	return folio_maybe_dma_pinned(page_folio(page));
}

int memkit_copy_page_to_user(unsigned long dst, struct page *page)
{
	void __user *to = (void __user *)dst;
	unsigned long left;
	void *src;

	if (!page)
		return clear_user(to, PAGE_SIZE) ? -EFAULT : 0;
	src = kmap_local_page(page);
	left = copy_to_user(to, src, PAGE_SIZE);
	kunmap_local(src);
	return left ? -EFAULT : 0;
}

void memkit_copy_page(void *dst, struct page *page)
{
	void *src;

	if (!page) {
		memset(dst, 0, PAGE_SIZE);
		return;
	}
	src = kmap_local_page(page);
	memcpy(dst, src, PAGE_SIZE);
	kunmap_local(src);
}
