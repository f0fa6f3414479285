/* SPDX-License-Identifier: GPL-2.0 */
/*
 * memkit's C edge (helpers.c): the functions rust/dax.rs, rust/edge.rs and
 * rust/ckpt.rs declare, and the one Rust function the C side calls.
 */
#ifndef MEMKIT_HELPERS_H
#define MEMKIT_HELPERS_H

#include <linux/types.h>

struct memkit_dax;

const char *memkit_param_journal_dev(void);
const char *memkit_param_commit_mode(void);
const char *memkit_param_group_commit(void);
int memkit_dax_open(const char *path, struct memkit_dax *d);
void memkit_dax_close(struct memkit_dax *d);
int memkit_dax_lock(void);
void memkit_dax_unlock(int id);
bool memkit_dax_alive(const struct memkit_dax *d);
void memkit_pmem_copy(void *dst, const void *src, size_t len);
int memkit_pmem_read(void *dst, const void *src, size_t len);
int memkit_pmem_fence(const struct memkit_dax *d);
u32 memkit_crc32c_append(u32 crc, const void *p, size_t len);
bool memkit_crc32c_accelerated(void);
int memkit_region_id_alloc(unsigned int max);
void memkit_region_id_free(unsigned int id);

struct address_space;
struct file;
struct page;
struct vm_area_struct;
/* rust/ckpt.rs */
bool memkit_page_dirty(struct page *page);
bool memkit_page_test_clear_dirty(struct page *page);
void memkit_page_lock(struct page *page);
void memkit_page_wait_unlocked(struct page *page);
bool memkit_page_maybe_pinned(struct page *page);
int memkit_copy_page_to_user(unsigned long dst, struct page *page);
void memkit_copy_page(void *dst, struct page *page);


/* rust/rmem.rs and rmem_edge.c */
struct workqueue_struct;
struct vm_fault;
struct wait_queue_head;
void memkit_release_fault_lock(struct vm_fault *vmf);
void memkit_event_init(struct wait_queue_head *wq);
void memkit_event_wake_all(struct wait_queue_head *wq);
int memkit_event_wait(struct wait_queue_head *wq, const u64 *seq, u64 seen, bool interruptible,
		      long timeout);
int memkit_sleep_until_killable(u64 until_ns);
int memkit_rmem_pte_scan(struct vm_area_struct *vma, unsigned long addr, unsigned int n,
			 u64 *present, u64 *young);
int memkit_rmem_pte_young(struct vm_area_struct *vma, unsigned long addr, struct page *page,
			  bool clear);
void memkit_copy_highpage(struct page *dst, struct page *src);
struct kiocb;
bool memkit_kiocb_nowait(struct kiocb *kiocb);
struct workqueue_struct *memkit_rmem_wq_create(void);

#endif /* MEMKIT_HELPERS_H */
