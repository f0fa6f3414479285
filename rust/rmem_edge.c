// SPDX-License-Identifier: GPL-2.0
/*
 * The C edge of remote-memory regions (rust/rmem.rs): what Rust-for-Linux 7.3 has
 * no abstraction for.
 *
 * - release_fault_lock() (inline) for the Rust fault handler (rust/rmem/fault.rs,
 *   whose vm_operations_struct is a Rust static: rust/mm.rs);
 * - the page-table reads of the prefetch: apply_to_page_range over the faulting
 *   address's PTE line, which hands each PTE to a callback under the PTE lock;
 * - the accessed bit of one PTE, read and optionally cleared (x86: atomically, as
 *   ptep_test_and_clear_young does; that function is not exported);
 * - copy_highpage (inline), and the module's workqueue (alloc_workqueue is a
 *   macro);
 * - the waits of a fault (rust/event.rs): a wait queue with a sequence number whose
 *   waits are killable or interruptible (wait_event_*_timeout are macros), a
 *   killable sleep until a time.
 */
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/delay.h>
#include <linux/hrtimer.h>
#include <linux/pgtable.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "helpers.h"

/* Drops the lock the fault was called with (mmap lock or per-VMA lock). */
void memkit_release_fault_lock(struct vm_fault *vmf)
{
	release_fault_lock(vmf);
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
 * Whether the PTE table covering @addr exists.  apply_to_page_range() allocates
 * the tables it does not find; its non-allocating twin
 * apply_to_existing_page_range() and walk_page_range() are not exported to
 * modules in 7.3, so the walks below look first and skip a range without a table:
 * its PTEs are none, not present.  Called with the mmap lock held, which keeps the
 * upper levels from being freed; a PTE table freed between this look and the
 * walk (empty-table reclaim) is allocated again by the walk, as before.
 */
static bool memkit_pte_table_exists(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;
	pmd_t pmdval;

	if (pgd_none(*pgd) || pgd_bad(*pgd))
		return false;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		return false;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud) || pud_bad(*pud) || pud_leaf(*pud))
		return false;
	pmd = pmd_offset(pud, addr);
	pmdval = pmdp_get_lockless(pmd);
	return !pmd_none(pmdval) && !pmd_bad(pmdval) && !pmd_leaf(pmdval);
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
	unsigned long end = addr + ((unsigned long)n << PAGE_SHIFT);
	unsigned long a, next;
	int err = 0;

	if (n == 0 || n > 64)
		return -EINVAL;
	/* One walk per PTE table the range touches (at most two for 64 pages). */
	for (a = addr; a < end && !err; a = next) {
		next = min(pmd_addr_end(a, end), end);
		if (memkit_pte_table_exists(vma->vm_mm, a))
			err = apply_to_page_range(vma->vm_mm, a, next - a, memkit_pte_scan_one,
						  &s);
	}
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

	if (!memkit_pte_table_exists(vma->vm_mm, addr))
		return -ENOENT;
	err = apply_to_page_range(vma->vm_mm, addr, PAGE_SIZE, memkit_young_one, &y);
	return err ? err : y.result;
}

void memkit_copy_highpage(struct page *dst, struct page *src)
{
	copy_highpage(dst, src);
}

bool memkit_kiocb_nowait(struct kiocb *kiocb)
{
	return (kiocb->ki_flags & IOCB_NOWAIT) || (kiocb->ki_filp->f_flags & O_NONBLOCK);
}

/* rust/event.rs: a wait queue with a sequence number. */
void memkit_event_init(struct wait_queue_head *wq)
{
	init_waitqueue_head(wq);
}

void memkit_event_wake_all(struct wait_queue_head *wq)
{
	wake_up_all(wq);
}

/*
 * Sleeps until *@seq differs from @seen, @timeout jiffies pass, or a signal comes:
 * any signal if @interruptible, else a fatal one.  0: the event or the timeout;
 * -EINTR: a signal.
 */
int memkit_event_wait(struct wait_queue_head *wq, const u64 *seq, u64 seen, bool interruptible,
		      long timeout)
{
	long ret;

	if (interruptible)
		ret = wait_event_interruptible_timeout(*wq, READ_ONCE(*seq) != seen, timeout);
	else
		ret = wait_event_killable_timeout(*wq, READ_ONCE(*seq) != seen, timeout);
	return ret < 0 ? -EINTR : 0;
}

/*
 * Sleeps until CLOCK_MONOTONIC reaches @until_ns, killably: -EINTR as soon as a
 * fatal signal is pending, else 0.  The slack is that of fsleep() (usleep_range(d,
 * 2d) up to 20 ms).
 */
int memkit_sleep_until_killable(u64 until_ns)
{
	ktime_t exp = ns_to_ktime(until_ns);
	s64 left;

	for (;;) {
		if (fatal_signal_pending(current))
			return -EINTR;
		left = ktime_to_ns(ktime_sub(exp, ktime_get()));
		if (left <= 0)
			return 0;
		if (left <= 10 * NSEC_PER_USEC) {
			ndelay(left);
			return 0;
		}
		set_current_state(TASK_KILLABLE);
		schedule_hrtimeout_range(&exp, min_t(s64, left, 20 * NSEC_PER_MSEC),
					 HRTIMER_MODE_ABS);
	}
}

struct workqueue_struct *memkit_rmem_wq_create(void)
{
	return alloc_workqueue("memkit-rmem", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
}

