// SPDX-License-Identifier: GPL-2.0
/*
 * The C edge of remote-memory regions (rust/rmem.rs): what Rust-for-Linux 7.3 has
 * no abstraction for.
 *
 * - the vm_operations_struct and its fault handler, which calls the Rust fault
 *   (memkit_rmem_fault) with the mmap lock held (the VMA has no ->map_pages, so a
 *   fault under the per-VMA lock is retried with the mmap lock);
 * - the page-table reads of the prefetch: apply_to_page_range over the faulting
 *   address's PTE line, which hands each PTE to a callback under the PTE lock;
 * - the accessed bit of one PTE, read and optionally cleared (x86: atomically, as
 *   ptep_test_and_clear_young does; that function is not exported);
 * - vm_insert_page of a region page, unmap_mapping_range of one page of every
 *   mapping (eviction), copy_highpage, and the module's workqueue.
 */
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/workqueue.h>

#include "helpers.h"

static vm_fault_t memkit_rmem_fault_c(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	int err;

	err = memkit_rmem_fault(vma->vm_private_data, vma, vmf->address, vmf->pgoff);
	if (!err)
		return VM_FAULT_NOPAGE;
	return err == -ENOMEM ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
}

static const struct vm_operations_struct memkit_rmem_vm_ops = {
	.fault = memkit_rmem_fault_c,
};

void memkit_rmem_vma_init(struct vm_area_struct *vma, const void *region)
{
	vma->vm_ops = &memkit_rmem_vm_ops;
	vma->vm_private_data = (void *)region;
}

/* Whether @vma is a mapping of @region (the caller holds the mmap lock). */
bool memkit_rmem_vma_is(const struct vm_area_struct *vma, const void *region)
{
	return vma->vm_ops == &memkit_rmem_vm_ops && vma->vm_private_data == region;
}

u64 memkit_vma_pgoff(const struct vm_area_struct *vma)
{
	return vma->vm_pgoff;
}

struct memkit_pte_scan {
	unsigned long start;
	u64 present;
	u64 young;
};

static int memkit_pte_scan_one(pte_t *ptep, unsigned long addr, void *data)
{
	struct memkit_pte_scan *s = data;
	unsigned long bit = (addr - s->start) >> PAGE_SHIFT;
	pte_t pte = ptep_get(ptep);

	if (pte_present(pte)) {
		s->present |= 1ULL << bit;
		if (pte_young(pte))
			s->young |= 1ULL << bit;
	}
	return 0;
}

/*
 * Reads the PTEs of @n (1 to 64) pages from @addr of @vma's address space: bit i of
 * *present (*young) is set if the PTE of page i is present (and accessed).  The
 * caller holds the mmap lock and the range lies inside @vma.
 */
int memkit_rmem_pte_scan(struct vm_area_struct *vma, unsigned long addr, unsigned int n,
			 u64 *present, u64 *young)
{
	struct memkit_pte_scan s = { .start = addr };
	int err;

	if (n == 0 || n > 64)
		return -EINVAL;
	err = apply_to_page_range(vma->vm_mm, addr, (unsigned long)n << PAGE_SHIFT,
				  memkit_pte_scan_one, &s);
	*present = s.present;
	*young = s.young;
	return err;
}

struct memkit_young {
	struct page *page;
	bool clear;
	int result;
};

static int memkit_young_one(pte_t *ptep, unsigned long addr, void *data)
{
	struct memkit_young *y = data;
	pte_t pte = ptep_get(ptep);

	if (!pte_present(pte) || pte_pfn(pte) != page_to_pfn(y->page)) {
		y->result = -ENOENT;
		return 0;
	}
	y->result = pte_young(pte) ? 1 : 0;
#ifdef CONFIG_X86
	if (y->result && y->clear)
		test_and_clear_bit(_PAGE_BIT_ACCESSED, (unsigned long *)&ptep->pte);
#endif
	return 0;
}

/*
 * Whether the PTE at @addr of @vma maps @page and is accessed (1), maps it and is
 * not (0), or does not map it (-ENOENT); with @clear, an accessed bit is cleared
 * (without a TLB flush, as reclaim does on x86).  The caller holds the mmap lock.
 */
int memkit_rmem_pte_young(struct vm_area_struct *vma, unsigned long addr, struct page *page,
			  bool clear)
{
	struct memkit_young y = { .page = page, .clear = clear, .result = -ENOENT };
	int err;

	err = apply_to_page_range(vma->vm_mm, addr, PAGE_SIZE, memkit_young_one, &y);
	return err ? err : y.result;
}

/* vm_insert_page: 0, -EBUSY if a PTE is already there, or another errno. */
int memkit_rmem_insert(struct vm_area_struct *vma, unsigned long addr, struct page *page)
{
	return vm_insert_page(vma, addr, page);
}

/* Unmaps page offset @pgoff from every mapping of @mapping (dirty PTEs set PG_dirty). */
void memkit_rmem_zap(struct address_space *mapping, u64 pgoff)
{
	unmap_mapping_range(mapping, (loff_t)pgoff << PAGE_SHIFT, PAGE_SIZE, 1);
}

void memkit_copy_highpage(struct page *dst, struct page *src)
{
	copy_highpage(dst, src);
}

bool memkit_kiocb_nowait(struct kiocb *kiocb)
{
	return (kiocb->ki_flags & IOCB_NOWAIT) || (kiocb->ki_filp->f_flags & O_NONBLOCK);
}

bool memkit_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

struct workqueue_struct *memkit_rmem_wq_create(void)
{
	return alloc_workqueue("memkit-rmem", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
}

void memkit_rmem_wq_destroy(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}
