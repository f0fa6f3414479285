/* SPDX-License-Identifier: GPL-2.0 */
/*
 * memkit's C edge (helpers.c): the functions rust/dax.rs and rust/edge.rs declare.
 */
#ifndef MEMKIT_HELPERS_H
#define MEMKIT_HELPERS_H

#include <linux/types.h>

struct memkit_dax;

const char *memkit_param_journal_dev(void);
const char *memkit_param_commit_mode(void);
bool memkit_capable_sys_admin(void);
int memkit_dax_open(const char *path, struct memkit_dax *d);
void memkit_dax_close(struct memkit_dax *d);
int memkit_dax_lock(void);
void memkit_dax_unlock(int id);
bool memkit_dax_alive(const struct memkit_dax *d);
void memkit_pmem_copy(void *dst, const void *src, size_t len);
int memkit_pmem_read(void *dst, const void *src, size_t len);
int memkit_pmem_fence(const struct memkit_dax *d);
void memkit_random(void *buf, size_t len);

#endif /* MEMKIT_HELPERS_H */
