// SPDX-License-Identifier: GPL-2.0
/*
 * hugetlb-shared-migrate (rendered by shootdown from a template).
 *
 * mbind(MPOL_MF_MOVE) must not migrate a hugetlb folio mapped through a shared PMD
 * table: it is not exclusive to the caller, whatever its mapcount of 1 says, and
 * queue_folios_hugetlb() asks hugetlb_pmd_shared(). Kernels from v6.13 (59d9094df3d7)
 * until "mm/hugetlb: fix hugetlb_pmd_shared()" (CVE-2026-23100) never saw a table as
 * shared, and moved such folios under the other sharers.
 *
 * On a guest with two NUMA nodes, the parent maps a 1 GiB hugetlb file at a
 * PUD-aligned address, bound to node 0, and touches `touch` pages. A child faults
 * them in through the parent's PMD table (one fault: the table is shared) and waits.
 * The parent then binds the area to node 1 with MPOL_MF_MOVE: every page must stay
 * on node 0, and the child must still map it through the shared table. Once the child has exited, the table is the parent's alone, and the
 * same call must move every page (the control: migration works here at all). TAP 13
 * on stdout; exit 0 pass, 1 fail, 4 skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOUCH 8UL    /* 2 MiB pages touched in the GiB */

#define HPAGE (2UL << 20)
#define GIB_BYTES (1UL << 30)
#define PAGES_PER_GIB (GIB_BYTES / HPAGE)
#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"
#define NODE_DIR "/sys/devices/system/node"
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#define MFD_HUGE_2MB (21U << MFD_HUGE_SHIFT)
/* <numaif.h> is libnuma's; the syscalls and their constants are all this needs. */
#define SD_MPOL_BIND 2
#define SD_MPOL_MF_MOVE (1 << 1)

_Static_assert(TOUCH >= 1 && TOUCH <= PAGES_PER_GIB, "touch must be 1..512");

static char *area;

/* ------------------------------------------------------------ TAP */

/* Shared by shootdown's templates (Templates/_common/tap.c.mustache): TAP output in the kselftest manner: a header, a plan, ok/not ok lines, a whole-test SKIP (exit 4), a bail-out (exit 1) and the totals. */
/*
 * tap_header(), tap_plan(N), tap_result()/tap_skip() for checks 1..N, return tap_finish().
 * The callers number their checks, and must report them in order: the kselftest
 * flavour lets kselftest.h number them, and stops the test where the two disagree.
 */
/*
 * The guest flavour prints TAP itself: the guest's initramfs has no kselftest tree, and
 * the host parses these exact lines (Images/agent/PROTOCOL.md).
 */
static int tap_failed, tap_skipped, tap_reported, tap_planned;
static bool tap_plan_last;

static void tap_header(void)
{
	/* As ksft_print_header(): a child forked with output still buffered would print it twice. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n");
}

/* The race templates plan after their checks: a whole-test SKIP may come until then. */
static void tap_plan(int n)
{
	tap_planned = n;
	tap_plan_last = tap_reported > 0;
	printf("1..%d\n", n);
}

static void tap_result(int n, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tap_result(int n, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d ", ok ? "" : "not ", n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	tap_reported++;
	if (!ok)
		tap_failed++;
}

/* "ok N description # SKIP reason": the check does not apply to this kernel. Not every test has one. */
static void __attribute__((unused)) tap_skip(int n, const char *description, const char *reason)
{
	printf("ok %d %s # SKIP %s\n", n, description, reason);
	tap_reported++;
	tap_skipped++;
}

static __attribute__((noreturn)) void tap_skip_all(const char *reason)
{
	printf("1..0 # SKIP %s\n", reason);
	exit(4);
}

static __attribute__((noreturn)) void tap_bail(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(1);
}

/*
 * kselftest's totals line, and the exit: 1 on any failure, else 0. A plan printed after
 * the checks ends the output without totals, as the race templates' records have it.
 */
static int tap_finish(void)
{
	if (!tap_plan_last)
		printf("# Totals: pass:%d fail:%d xfail:0 xpass:0 skip:%d error:0\n",
		       tap_planned - tap_failed - tap_skipped, tap_failed, tap_skipped);
	return tap_failed ? 1 : 0;
}

/* Shared by shootdown's templates (Templates/_common/pool.c.mustache): The 2 MiB hugetlb pool's counters, and a wait for them to return to a baseline. */
static long read_pool(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), HP_DIR "/%s", name);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Whether the kernel has 2 MiB hugetlb pages at all; the pool's size is read_pool()'s. */
static bool __attribute__((unused)) hugetlb_2m_supported(void)
{
	return !access(HP_DIR, F_OK);
}

/* The pool may lag the munmap briefly; give it up to two seconds. */
static bool pool_back(long free0, long resv0, long *free1, long *resv1)
{
	for (int i = 0; i < 200; i++) {
		*free1 = read_pool("free_hugepages");
		*resv1 = read_pool("resv_hugepages");
		if (*free1 == free0 && *resv1 == resv0)
			return true;
		usleep(10000);
	}
	return false;
}

/* ---------------------------------------------------------- helpers */

/* Shared by shootdown's templates (Templates/_common/clock.c.mustache): Monotonic nanoseconds, and a splitmix64 finaliser for per-page patterns. */
static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* splitmix64 finaliser: distinct, hard-to-fake values per (page, generation). */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Shared by shootdown's templates (Templates/_common/window.c.mustache): marks of the measured phase, so per-op counters leave out the test's set-up and teardown. */
/*
 * The agent snapshots /proc/interrupts and the kprobe hit counts around the whole test
 * program: fork, exec, set-up, the measured loop, teardown and exit. window_mark("begin")
 * and window_mark("end") copy them around the loop alone, into files the agent sends
 * with the test record (Images/agent/PROTOCOL.md); the host divides the window's counts
 * by the operations and reports the rest as the fixed cost. Where WINDOW_DIR does not
 * exist (the test run by hand, or from an exported selftest) the marks do nothing.
 */
#define WINDOW_DIR "/shootdown/window"

static void window_copy(const char *from, const char *mark, const char *kind)
{
	char path[128], buf[16384];
	ssize_t n;

	snprintf(path, sizeof(path), WINDOW_DIR "/%s.%s", mark, kind);
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return;
	int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out >= 0) {
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n)
				break;
		close(out);
	}
	close(in);
}

/* A line in the agent's ipi tracepoint instance, where it records one. */
static void window_trace_marker(const char *mark)
{
	char line[64];
	int fd = open("/sys/kernel/tracing/instances/shootdown-ipi/trace_marker", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	int n = snprintf(line, sizeof(line), "shootdown-window %s\n", mark);
	/* Without the marker the host counts the whole test's IPIs by sender. */
	ssize_t written = write(fd, line, (size_t)n);
	(void)written;
	close(fd);
}

/* The interrupt rows first at "begin" and last at "end", so the window holds the kprobe hits it counts. */
static void window_mark(const char *mark)
{
	if (access(WINDOW_DIR, W_OK))
		return;
	bool begin = !strcmp(mark, "begin");
	if (begin) {
		window_copy("/proc/interrupts", mark, "interrupts");
		window_trace_marker(mark);
	}
	window_copy("/sys/kernel/tracing/kprobe_profile", mark, "kprobes");
	if (!begin) {
		window_trace_marker(mark);
		window_copy("/proc/interrupts", mark, "interrupts");
	}
}

/* Shared by shootdown's templates (Templates/_common/sharing.c.mustache): what a sharer sees of PMD table sharing: the faults its reads take, and pagemap's view of its pages. */
#ifndef PM_MMAP_EXCLUSIVE
#define PM_MMAP_EXCLUSIVE (1ULL << 56) /* pagemap: page mapped by this process only */
#endif
#ifndef PM_PRESENT
#define PM_PRESENT (1ULL << 63)        /* pagemap: page present */
#endif

static long __attribute__((unused)) minor_faults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) ? -1 : ru.ru_minflt;
}

/*
 * After fork every stack page is copy-on-write: write the stack the first read will
 * use, so that its faults are the area's only.
 */
static void __attribute__((noinline, unused)) prefault_stack(void)
{
	volatile char stack[16384];

	for (size_t i = 0; i < sizeof(stack); i += 256)
		stack[i] = 0;
}

/*
 * Classifies `npages` pages (page i at page(i)) by their /proc/self/pagemap entry:
 * present and shared (PM_MMAP_EXCLUSIVE clear), present and exclusive, or not
 * present. While a PMD table is shared the kernel must report shared; kernels with a
 * broken hugetlb_pmd_shared() report exclusive. All counts -1 if unreadable.
 */
static void __attribute__((unused)) read_pagemap(unsigned long npages, uintptr_t (*page)(unsigned long),
						 long *shared, long *exclusive, long *absent)
{
	long psize = sysconf(_SC_PAGESIZE);
	int fd = open("/proc/self/pagemap", O_RDONLY);

	*shared = *exclusive = *absent = 0;
	if (fd < 0 || psize <= 0)
		goto fail;
	for (unsigned long p = 0; p < npages; p++) {
		uint64_t e;
		off_t off = (off_t)(page(p) / (uintptr_t)psize * sizeof(e));

		if (pread(fd, &e, sizeof(e), off) != (ssize_t)sizeof(e))
			goto fail;
		if (!(e & PM_PRESENT))
			(*absent)++;
		else if (e & PM_MMAP_EXCLUSIVE)
			(*exclusive)++;
		else
			(*shared)++;
	}
	close(fd);
	return;
fail:
	if (fd >= 0)
		close(fd);
	*shared = *exclusive = *absent = -1;
}

static char *page_at(unsigned long i)
{
	return area + i * (PAGES_PER_GIB / TOUCH) * HPAGE;
}

static uint64_t page_value(unsigned long i)
{
	return mix(0x5eed0000ULL ^ i);
}

/* Free 2 MiB pages on one node, -1 where the node or its counter does not exist. */
static long node_free_pages(int node)
{
	char path[160];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), NODE_DIR "/node%d/hugepages/hugepages-2048kB/free_hugepages", node);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static long bind_area(int node, unsigned int flags)
{
	unsigned long mask = 1UL << node;

	return syscall(SYS_mbind, area, GIB_BYTES, SD_MPOL_BIND, &mask, sizeof(mask) * 8, flags);
}

/* How many touched pages are on `node` now (move_pages with no target only asks). */
static long pages_on(int node)
{
	void *pages[TOUCH];
	int status[TOUCH];
	long on = 0;

	for (unsigned long i = 0; i < TOUCH; i++)
		pages[i] = page_at(i);
	if (syscall(SYS_move_pages, 0, TOUCH, pages, NULL, status, 0))
		return -1;
	for (unsigned long i = 0; i < TOUCH; i++)
		on += status[i] == node;
	return on;
}

static int mismatches(void)
{
	int bad = 0;

	for (unsigned long i = 0; i < TOUCH; i++)
		bad += *(volatile uint64_t *)page_at(i) != page_value(i);
	return bad;
}

static uintptr_t touched_page(unsigned long i)
{
	return (uintptr_t)page_at(i);
}

static void await_go(int go_fd)
{
	char go;

	while (read(go_fd, &go, 1) < 0 && errno == EINTR)
		;
}

/*
 * The sharer: faults the pages in through the parent's table and reports its faults;
 * once the parent has asked for a move, reports how pagemap shows its pages (read
 * without faulting: a migration attempt that unshared its table left them absent),
 * and exits when let go.
 */
static __attribute__((noreturn)) void sharer(int report_fd, int go_fd)
{
	long view[3];

	prefault_stack();
	long before = minor_faults();
	long bad = mismatches();
	long faults = minor_faults() - before;

	if (write(report_fd, &faults, sizeof(faults)) != (ssize_t)sizeof(faults))
		_exit(1);
	await_go(go_fd);
	read_pagemap(TOUCH, touched_page, &view[0], &view[1], &view[2]);
	if (write(report_fd, view, sizeof(view)) != (ssize_t)sizeof(view))
		_exit(1);
	await_go(go_fd);
	/* The pages the parent asked to move must still read right here. */
	_exit(bad || mismatches() ? 1 : 0);
}

int main(void)
{
	long free0, resv0, free1, resv1, faults = -1;
	int report[2], go[2], status = 0;
	char reason[200];

	setvbuf(stdout, NULL, _IOLBF, 0);
	tap_header();
	if (!hugetlb_2m_supported())
		tap_skip_all("no 2 MiB hugetlb pool (" HP_DIR ")");
	if (access(NODE_DIR "/node1", F_OK))
		tap_skip_all("needs a guest with two NUMA nodes (numa_nodes: 2)");
	if (node_free_pages(0) < (long)TOUCH || node_free_pages(1) < (long)TOUCH) {
		snprintf(reason, sizeof(reason), "need %lu free 2 MiB pages on each node, have %ld and %ld",
			 TOUCH, node_free_pages(0), node_free_pages(1));
		tap_skip_all(reason);
	}
	free0 = read_pool("free_hugepages");
	resv0 = read_pool("resv_hugepages");

	int fd = memfd_create("hugetlb-shared-migrate", MFD_HUGETLB | MFD_HUGE_2MB | MFD_CLOEXEC);
	if (fd < 0)
		tap_bail("memfd_create(MFD_HUGETLB)");
	if (ftruncate(fd, (off_t)GIB_BYTES))
		tap_bail("ftruncate");
	char *res = mmap(NULL, 2 * GIB_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		tap_bail("mmap (reservation)");
	char *aligned = (char *)(((uintptr_t)res + GIB_BYTES - 1) & ~(uintptr_t)(GIB_BYTES - 1));
	/* No reservation for the whole file: the pool holds only the touched pages. */
	area = mmap(aligned, GIB_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd, 0);
	if (area == MAP_FAILED)
		tap_bail("mmap of the hugetlb file");
	if (bind_area(0, 0))
		tap_bail("mbind to node 0");
	for (unsigned long i = 0; i < TOUCH; i++)
		*(volatile uint64_t *)page_at(i) = page_value(i);
	if (pages_on(0) != (long)TOUCH) {
		snprintf(reason, sizeof(reason), "the touched pages are not all on node 0 (%ld of %lu)", pages_on(0), TOUCH);
		tap_skip_all(reason);
	}

	tap_plan(4);
	printf("# area %p: 1 GiB hugetlb file bound to node 0, %lu pages touched\n", (void *)area, TOUCH);
	if (pipe(report) || pipe(go))
		tap_bail("pipe");
	fflush(stdout);
	/* The window holds the share (the host checks huge_pmd_share in it) and the mbind. */
	window_mark("begin");
	int64_t start = now_ns();
	pid_t child = fork();
	if (child < 0)
		tap_bail("fork");
	if (child == 0) {
		close(report[0]);
		close(go[1]);
		sharer(report[1], go[0]);
	}
	close(report[1]);
	close(go[0]);
	if (read(report[0], &faults, sizeof(faults)) != (ssize_t)sizeof(faults))
		faults = -1;

	/* While the child shares the table: nothing may move, and its mapping stays. */
	long moved_err = bind_area(1, SD_MPOL_MF_MOVE) ? errno : 0;
	long moved_shared = pages_on(1);
	long view[3] = { -1, -1, -1 };
	if (write(go[1], "x", 1) != 1 || read(report[0], view, sizeof(view)) != (ssize_t)sizeof(view))
		printf("# the sharer did not report its view: %s\n", strerror(errno));
	int64_t wall = now_ns() - start;
	window_mark("end");

	if (write(go[1], "x", 1) != 1)
		printf("# cannot release the sharer: %s\n", strerror(errno));
	close(go[1]);
	if (waitpid(child, &status, 0) != child)
		status = -1;
	/* The table is the parent's alone now: the same call must move every page. */
	long control_err = bind_area(1, SD_MPOL_MF_MOVE) ? errno : 0;
	long moved_exclusive = pages_on(1);
	int bad = mismatches();

	munmap(area, GIB_BYTES);
	munmap(res, 2 * GIB_BYTES);
	close(fd);
	bool pool_ok = pool_back(free0, resv0, &free1, &resv1);

	/* Shared: one fault for the whole GiB; not shared: one per page. A stray fault
	 * outside the area is tolerated (arm64 takes one), so it takes 3 pages to tell. */
	if (TOUCH <= 2)
		tap_skip(1, "the child shared the parent's PMD table", "touch<=2: a table not shared costs no more than a stray fault");
	else
		tap_result(1, faults >= 1 && faults < (long)TOUCH,
			   "the child shared the parent's PMD table (%ld faults for %lu pages; 1 if shared, %lu if not)",
			   faults, TOUCH, TOUCH);
	tap_result(2, moved_shared == 0 && moved_err == 0 && view[0] == (long)TOUCH,
		   "mbind(MPOL_MF_MOVE) left pages in a shared PMD table alone: %ld of %lu moved to node 1 (errno %ld); "
		   "the sharer still maps %ld through the shared table (%ld exclusive, %ld absent)",
		   moved_shared, TOUCH, moved_err, view[0], view[1], view[2]);
	tap_result(3, bad == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "data intact for the parent (%d pages wrong) and the sharer (status %#x)", bad, status);
	tap_result(4, pool_ok, "hugetlb pool back to baseline (free %ld/%ld resv %ld/%ld)", free1, free0, resv1, resv0);
	printf("# metric ops=%lu\n", TOUCH);
	printf("# metric op=shared-page\n");
	printf("# metric moved_while_shared=%ld\n", moved_shared);
	printf("# metric sharer_absent_after_move=%ld\n", view[2]);
	/* The control: 1 when the exclusive pages moved, so migration works on this guest. */
	printf("# metric control_moved=%d\n", moved_exclusive == (long)TOUCH && control_err == 0);
	printf("# metric control_pages_moved=%ld\n", moved_exclusive);
	printf("# metric first_read_faults=%ld\n", faults);
	printf("# metric wall_ns=%" PRId64 "\n", wall);
	return tap_finish();
}
