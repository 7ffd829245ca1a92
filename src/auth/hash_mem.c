/*
 * Memory for yescrypt, kept between verifications. libxcrypt maps a fresh
 * 16 MiB region for every yescrypt hash and unmaps it after: the page
 * faults and page zeroing are a third of a verification's time (perf:
 * 37% in the kernel). A hashing thread that marks its crypt call keeps
 * the region instead, and gets the same one back next time, so the
 * cost of a login is the hash, not the memory management around it.
 *
 * It works by giving the process its own mmap and munmap: libcrypt calls
 * them through the PLT, glibc's own allocator does not. Outside a marked
 * crypt call, or for anything but an anonymous private mapping, they are
 * the plain system calls. A region stays mapped (16 MiB per hashing
 * thread) for the life of the thread; yescrypt writes all of it before
 * reading, so nothing of an earlier hash is read by a later one.
 */
#include "auth/hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Below this, caching is pointless (and yescrypt's region is far above). */
#define REGION_MIN (1024 * 1024)

static _Thread_local bool in_crypt;
static _Thread_local void *region;
static _Thread_local size_t region_len;
static _Thread_local bool region_busy;
static _Thread_local unsigned long reuses;

void hash_mem_enter(void)
{
    in_crypt = true;
}

void hash_mem_leave(void)
{
    in_crypt = false;
}

unsigned long hash_mem_reuses(void)
{
    return reuses;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    bool cacheable = in_crypt && !region_busy && addr == NULL && fd == -1 && len >= REGION_MIN &&
                     (flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE) && !(flags & MAP_FIXED) &&
                     prot == (PROT_READ | PROT_WRITE);

    if (cacheable && region != NULL && region_len == len) {
        region_busy = true;
        reuses++;
        return region;
    }
    void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    if (cacheable && p != MAP_FAILED && region == NULL) {
        region = p;
        region_len = len;
        region_busy = true;
    }
    return p;
}

int munmap(void *addr, size_t len)
{
    if (addr != NULL && addr == region) {
        if (len != region_len) {
            errno = EINVAL; /* never happens with libcrypt; refuse rather than guess */
            return -1;
        }
        region_busy = false;
        return 0;
    }
    return (int)syscall(SYS_munmap, addr, len);
}
