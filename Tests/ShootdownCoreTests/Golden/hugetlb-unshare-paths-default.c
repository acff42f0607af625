// SPDX-License-Identifier: GPL-2.0
/*
 * hugetlb-unshare-paths (rendered by shootdown from a template).
 *
 * Every way a shared hugetlb PMD table is unshared must end with the GUP-fast
 * sync (tlb_remove_table_sync_one) when a table passes to a single owner. A
 * hugetlbfs file (memfd_create MFD_HUGETLB) is mapped MAP_SHARED at a PUD-aligned
 * address; the parent touches pages in every GiB, and each cycle forks sharers
 * that fault the area in (huge_pmd_share) and report what smaps, pagemap and
 * their fault counts say about the sharing. Once all have reported, the path
 * under test unshares the tables:
 *   munmap         each sharer in turn unmaps the whole area
 *   munmap-half    each sharer unmaps the first half GiB: the VMA split in the
 *                  middle of a PUD unshares that table (hugetlb_split); the
 *                  other tables are unshared when the sharers exit
 *   mremap         each sharer moves the area to another PUD-aligned address
 *   mprotect       each sharer makes the whole area read-only
 *   mprotect-half  each sharer makes the first half GiB read-only (a split)
 *   punch-hole     the parent punches one touched page per GiB out of the file
 *                  (fallocate PUNCH_HOLE): every mapping is unmapped there
 *   truncate       the parent truncates the file to nothing and back
 * The sharers act one at a time, in order, and read nothing afterwards (a read
 * would share a table again), so only the last one's call leaves
 * each table to one owner: one "handover" per cycle (two for the half paths
 * with more than one GiB: the split, then the exits; one per GiB for punch-hole,
 * a call per table), and the host expects one
 * sync per handover (8ce720d5bd; 1013af4f58 alone syncs per table and per
 * sharer, a kernel without the sync none). TAP 13 on stdout; exit 0 pass,
 * 1 fail, 4 skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GIB 2UL        /* size of the area, one PMD table per GiB */
#define TOUCH 4UL    /* 2 MiB pages touched per GiB */
#define CHILDREN 4 /* sharers per cycle */
#define CYCLES 8UL   /* rounds */
#define PATH "munmap"       /* how the tables are unshared */

#define HPAGE (2UL << 20)
#define GIB_BYTES (1UL << 30)
#define HALF_GIB (GIB_BYTES / 2)
#define PAGES_PER_GIB (GIB_BYTES / HPAGE)
#define NPAGES (GIB * TOUCH)
#define AREA_BYTES (GIB * GIB_BYTES)
#define MAX_DIAG 10
#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#define MFD_HUGE_2MB (21U << MFD_HUGE_SHIFT)

_Static_assert(GIB >= 1, "gib must be at least 1");
_Static_assert(TOUCH >= 1 && TOUCH <= PAGES_PER_GIB / 2, "touch must be 1..256 (pages sit in both halves of a GiB)");
_Static_assert(CHILDREN >= 1 && CHILDREN <= 64, "children must be 1..64");

enum path { MUNMAP, MUNMAP_HALF, MREMAP, MPROTECT, MPROTECT_HALF, PUNCH_HOLE, TRUNCATE };
static const char *const path_names[] = {
	"munmap", "munmap-half", "mremap", "mprotect", "mprotect-half", "punch-hole", "truncate",
};
static enum path path;

/* What a sharer tells the parent, twice: after it shared, and after it acted. */
struct report {
	int child;
	int mismatches;
	long shared_kb, private_kb;
	long pm_shared, pm_exclusive, pm_absent;
	long faults; /* minor faults of the first read: one per GiB when the tables are shared */
};

static char *area;
static int memfd;
static int diag_left = MAX_DIAG;

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

/* Shared by shootdown's templates (Templates/_common/hugetlb.c.mustache): The 2 MiB hugetlb pool (pool.c.mustache), smaps of the test's area and the kernel version. */

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

/* Shared_Hugetlb / Private_Hugetlb of our area from /proc/self/smaps. */
static void read_smaps(long *shared_kb, long *private_kb)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[256];
	bool ours = false;

	*shared_kb = *private_kb = -1;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			ours = start == (unsigned long)area;
		else if (ours && !sscanf(line, "Shared_Hugetlb: %ld kB", shared_kb))
			sscanf(line, "Private_Hugetlb: %ld kB", private_kb);
	}
	fclose(f);
}

/* Whether the running kernel's release is older than major.minor. */
static bool kernel_older_than(int major, int minor)
{
	struct utsname u;
	int ma, mi;

	if (uname(&u) || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return false;
	return ma < major || (ma == major && mi < minor);
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

/* Touched page i: TOUCH pages spread evenly over each GiB, half of them in each half. */
static unsigned long page_offset(unsigned long i)
{
	return (i / TOUCH) * GIB_BYTES + (i % TOUCH) * (PAGES_PER_GIB / TOUCH) * HPAGE;
}

static uintptr_t touched_page(unsigned long i)
{
	return (uintptr_t)(area + page_offset(i));
}

static uint64_t page_value(unsigned long page, unsigned long gen)
{
	return mix((uint64_t)page << 32 ^ gen);
}

static void write_pattern(unsigned long gen)
{
	for (unsigned long p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = (volatile uint64_t *)(area + page_offset(p));

		w[0] = page_value(p, gen);
		w[HPAGE / 8 - 1] = ~page_value(p, gen);
	}
}

/* Mismatches of the touched pages at `base`; a page may be expected zero (punched, truncated). */
static int check_pages(const char *who, const char *base, unsigned long gen, bool (*zero)(unsigned long))
{
	int bad = 0;

	for (unsigned long p = 0; p < NPAGES; p++) {
		const volatile uint64_t *w = (const volatile uint64_t *)(base + page_offset(p));
		bool hole = zero && zero(p);
		uint64_t first = hole ? 0 : page_value(p, gen), last = hole ? 0 : ~page_value(p, gen);

		if (w[0] != first || w[HPAGE / 8 - 1] != last) {
			if (diag_left-- > 0)
				printf("# %s: page %lu is %#" PRIx64 "/%#" PRIx64 ", expected %#" PRIx64 "/%#" PRIx64 "\n",
				       who, p, w[0], w[HPAGE / 8 - 1], first, last);
			bad++;
		}
	}
	return bad;
}

/* The page punch-hole removes: the first touched page of every GiB. */
static bool punched(unsigned long i)
{
	return i % TOUCH == 0;
}

static bool always(unsigned long i)
{
	(void)i;
	return true;
}

/* A PUD-aligned stretch of address space the size of the area, reserved PROT_NONE. */
static char *reserve_aligned(void)
{
	char *res = mmap(NULL, AREA_BYTES + GIB_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (res == MAP_FAILED)
		return NULL;
	char *aligned = (char *)(((uintptr_t)res + GIB_BYTES - 1) & ~(uintptr_t)(GIB_BYTES - 1));
	if (aligned > res)
		munmap(res, (size_t)(aligned - res));
	if (aligned + AREA_BYTES < res + AREA_BYTES + GIB_BYTES)
		munmap(aligned + AREA_BYTES, (size_t)(res + GIB_BYTES - aligned));
	return aligned;
}

/*
 * The sharer's own unsharing: 0, or -1 when the call failed (printed). Nothing is read
 * afterwards: a read faults the page in again, and the new table may share the parent's
 * or another sharer's (any mapping of the file at the same PUD offset, with the same
 * flags, qualifies), which would add handovers at exit that the path did not make. The
 * parent checks the file's data once the sharers are gone.
 */
static int unshare_in_child(const char *who)
{
	char *moved;

	switch (path) {
	case MUNMAP:
		if (munmap(area, AREA_BYTES))
			break;
		return 0;
	case MUNMAP_HALF:
		if (munmap(area, HALF_GIB))
			break;
		return 0;
	case MREMAP:
		moved = reserve_aligned();
		if (!moved)
			break;
		if (mremap(area, AREA_BYTES, AREA_BYTES, MREMAP_MAYMOVE | MREMAP_FIXED, moved) == MAP_FAILED)
			break;
		return 0;
	case MPROTECT:
		if (mprotect(area, AREA_BYTES, PROT_READ))
			break;
		return 0;
	case MPROTECT_HALF:
		if (mprotect(area, HALF_GIB, PROT_READ))
			break;
		return 0;
	case PUNCH_HOLE:
	case TRUNCATE:
		return 0; /* the parent unshares */
	}
	printf("# %s: %s: %s\n", who, PATH, strerror(errno));
	return -1;
}

/*
 * Shares and reports, waits for its turn, unshares (its path) and reports again,
 * then waits to be let go: the parent orders the turns and the exits.
 */
static __attribute__((noreturn)) void child_main(unsigned long cycle, int idx, int report_fd, int go_fd)
{
	struct report rep = { .child = idx };
	char who[32], go;

	snprintf(who, sizeof(who), "child %d cycle %lu", idx, cycle);
	prefault_stack();
	long faults0 = minor_faults();
	rep.mismatches = check_pages(who, area, cycle, NULL);
	long faults1 = minor_faults();
	rep.faults = faults0 < 0 || faults1 < 0 ? -1 : faults1 - faults0;
	read_smaps(&rep.shared_kb, &rep.private_kb);
	read_pagemap(NPAGES, touched_page, &rep.pm_shared, &rep.pm_exclusive, &rep.pm_absent);
	if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(1);
	while (read(go_fd, &go, 1) < 0 && errno == EINTR)
		;
	if (unshare_in_child(who))
		rep.mismatches++;
	if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(1);
	while (read(go_fd, &go, 1) < 0 && errno == EINTR)
		;
	_exit(rep.mismatches ? 1 : 0);
}

struct totals {
	int failures;
	long shared_kb, private_kb;
	long faults_min, faults_max;
	long pm_shared, pm_exclusive, pm_absent;
};

static void add_share_report(const struct report *rep, struct totals *t)
{
	if (rep->shared_kb < t->shared_kb)
		t->shared_kb = rep->shared_kb;
	if (rep->private_kb > t->private_kb)
		t->private_kb = rep->private_kb;
	if (rep->faults < t->faults_min)
		t->faults_min = rep->faults;
	if (rep->faults > t->faults_max)
		t->faults_max = rep->faults;
	if (rep->pm_shared < t->pm_shared)
		t->pm_shared = rep->pm_shared;
	if (rep->pm_exclusive > t->pm_exclusive)
		t->pm_exclusive = rep->pm_exclusive;
	if (rep->pm_absent > t->pm_absent)
		t->pm_absent = rep->pm_absent;
}

/* One report; false when the child died first (it holds no one up) or the pipe broke. */
static bool await_report(int fd, struct report *rep, unsigned long cycle)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (poll(&pfd, 1, 100) > 0)
			return read(fd, rep, sizeof(*rep)) == (ssize_t)sizeof(*rep);
		if (waitpid(-1, NULL, WNOHANG) > 0) {
			printf("# cycle %lu: a child exited before it reported\n", cycle);
			return false;
		}
	}
}

/* The parent's unsharing, for the paths that go through the file: every mapping of it. */
static int unshare_in_parent(unsigned long cycle)
{
	switch (path) {
	case PUNCH_HOLE:
		/* A call per GiB: each hands its one table over in a call of its own. */
		for (unsigned long g = 0; g < GIB; g++)
			if (fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)page_offset(g * TOUCH), HPAGE)) {
				printf("# cycle %lu: fallocate(PUNCH_HOLE): %s\n", cycle, strerror(errno));
				return 1;
			}
		return 0;
	case TRUNCATE:
		if (ftruncate(memfd, 0) || ftruncate(memfd, (off_t)AREA_BYTES)) {
			printf("# cycle %lu: ftruncate: %s\n", cycle, strerror(errno));
			return 1;
		}
		return 0;
	default:
		return 0;
	}
}

/*
 * The parent's view once the sharers are gone (reading earlier would fault a punched
 * page in through a table a sharer still holds, and share it again).
 */
static int check_parent(unsigned long cycle)
{
	switch (path) {
	case PUNCH_HOLE:
		return check_pages("parent after punch", area, cycle, punched);
	case TRUNCATE:
		return check_pages("parent after truncate", area, cycle, always);
	default:
		return check_pages("parent", area, cycle, NULL);
	}
}

/* Tables passed to one owner per cycle, in separate calls: the syncs the kernel owes. */
static unsigned long handovers_per_cycle(void)
{
	if ((path == MUNMAP_HALF || path == MPROTECT_HALF) && GIB > 1)
		return 2; /* the split's table, then the rest at the last exit */
	if (path == PUNCH_HOLE)
		return GIB; /* a fallocate call per table */
	return 1;
}

static void run_cycle(unsigned long cycle, struct totals *t)
{
	pid_t pids[CHILDREN];
	int go[CHILDREN][2], reports[CHILDREN][2];
	int forked = 0;
	struct report rep;

	write_pattern(cycle);
	fflush(stdout);
	for (int c = 0; c < CHILDREN; c++) {
		if (pipe(go[c]) || pipe(reports[c]))
			tap_bail("pipe");
		pids[c] = fork();
		if (pids[c] < 0) {
			printf("# cycle %lu: fork: %s\n", cycle, strerror(errno));
			t->failures++;
			break;
		}
		if (pids[c] == 0) {
			close(go[c][1]);
			close(reports[c][0]);
			child_main(cycle, c, reports[c][1], go[c][0]);
		}
		close(go[c][0]);
		close(reports[c][1]);
		forked++;
	}
	/* Every sharer has faulted and reported before anyone unshares. */
	for (int c = 0; c < forked; c++) {
		if (await_report(reports[c][0], &rep, cycle))
			add_share_report(&rep, t);
		else
			t->failures++;
	}
	/* One at a time, in order: only the last sharer's call hands the tables over. */
	for (int c = 0; c < forked; c++) {
		if (write(go[c][1], "x", 1) != 1 || !await_report(reports[c][0], &rep, cycle)) {
			printf("# cycle %lu: child %d did not unshare\n", cycle, c);
			t->failures++;
		}
	}
	t->failures += unshare_in_parent(cycle);
	for (int c = 0; c < forked; c++) {
		int status = 0;

		if (write(go[c][1], "x", 1) != 1)
			printf("# cycle %lu: cannot release child %d: %s\n", cycle, c, strerror(errno));
		close(go[c][1]);
		close(reports[c][0]);
		if (waitpid(pids[c], &status, 0) != pids[c] || !WIFEXITED(status) || WEXITSTATUS(status)) {
			printf("# cycle %lu: child %d failed (status %#x)\n", cycle, c, status);
			t->failures++;
		}
	}
	t->failures += check_parent(cycle);
}

/* ------------------------------------------------------------- setup */

static void map_area(void)
{
	memfd = memfd_create("hugetlb-unshare-paths", MFD_HUGETLB | MFD_HUGE_2MB | MFD_CLOEXEC);
	if (memfd < 0) {
		if (errno == EINVAL || errno == ENOENT || errno == ENOSYS)
			tap_skip_all("memfd_create(MFD_HUGETLB) with 2 MiB pages not available");
		tap_bail("memfd_create");
	}
	if (ftruncate(memfd, (off_t)AREA_BYTES))
		tap_bail("ftruncate");
	char *aligned = reserve_aligned();
	if (!aligned)
		tap_skip_all("cannot reserve address space for a PUD-aligned area");
	/* No reservation for the whole file: the pool holds only the touched pages. */
	area = mmap(aligned, AREA_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, memfd, 0);
	if (area == MAP_FAILED)
		tap_bail("mmap of the hugetlb file");
}

int main(void)
{
	struct totals t = { .shared_kb = LONG_MAX, .private_kb = -1, .faults_min = LONG_MAX, .faults_max = -1,
			    .pm_shared = (long)NPAGES, .pm_exclusive = -1, .pm_absent = -1 };
	long free0, resv0, free1, resv1;
	char reason[160];
	bool known = false;

	tap_header();
	for (size_t i = 0; i < sizeof(path_names) / sizeof(path_names[0]); i++)
		if (!strcmp(PATH, path_names[i])) {
			path = (enum path)i;
			known = true;
		}
	if (!known)
		tap_skip_all("unknown unshare path " PATH);
	free0 = read_pool("free_hugepages");
	resv0 = read_pool("resv_hugepages");
	if (free0 < 0 || resv0 < 0)
		tap_skip_all("no 2 MiB hugetlb pool (" HP_DIR ")");
	if ((unsigned long)free0 < NPAGES) {
		snprintf(reason, sizeof(reason), "need %lu free 2 MiB hugepages, pool has %ld", NPAGES, free0);
		tap_skip_all(reason);
	}
	map_area();

	tap_plan(4);
	printf("# area %p: %lu GiB hugetlb file, %lu pages touched per GiB, %d sharers, %lu cycles, unshared by %s\n",
	       (void *)area, GIB, TOUCH, CHILDREN, CYCLES, PATH);

	window_mark("begin");
	int64_t start = now_ns();
	for (unsigned long cycle = 0; cycle < CYCLES; cycle++)
		run_cycle(cycle, &t);
	int64_t wall = now_ns() - start;
	window_mark("end");

	if (munmap(area, AREA_BYTES))
		tap_bail("munmap");
	close(memfd);
	bool pool_ok = pool_back(free0, resv0, &free1, &resv1);

	tap_result(1, t.failures == 0, "data intact and every call succeeded across %lu cycles of %d sharers (%s)",
		   CYCLES, CHILDREN, PATH);
	tap_result(2, pool_ok, "hugetlb pool back to baseline (free %ld/%ld resv %ld/%ld)", free1, free0, resv1, resv0);
	long want_kb = (long)(NPAGES * (HPAGE >> 10));
	if (t.shared_kb == LONG_MAX)
		t.shared_kb = -1;
	bool pm_ok = t.pm_shared == (long)NPAGES && t.pm_exclusive == 0 && t.pm_absent == 0;
	if (!pm_ok && t.pm_shared >= 0 && kernel_older_than(6, 10))
		tap_skip(3, "every sharer mapped every page through shared tables (smaps, pagemap)",
			 "pagemap ignores PMD table sharing before Linux 6.10");
	else
		tap_result(3, t.shared_kb == want_kb && t.private_kb == 0 && pm_ok,
			   "every sharer mapped every page through shared tables: Shared_Hugetlb %ld of %ld kB, "
			   "Private_Hugetlb %ld kB, pagemap shared %ld of %lu",
			   t.shared_kb, want_kb, t.private_kb, t.pm_shared, NPAGES);
	if (t.faults_min == LONG_MAX)
		t.faults_min = -1;
	if (TOUCH <= 2)
		tap_skip(4, "every PMD table shared on the first fault", "touch<=2: a table not shared costs no more than a stray fault");
	else
		tap_result(4, t.faults_min >= 1 && t.faults_max < (long)(GIB + TOUCH - 1),
			   "every PMD table shared on the first fault (%ld..%ld faults per sharer; %lu if shared, %lu if not)",
			   t.faults_min, t.faults_max, GIB, NPAGES);
	printf("# metric ops=%lu\n", CYCLES * handovers_per_cycle());
	printf("# metric op=handover\n");
	printf("# metric handovers_per_cycle=%lu\n", handovers_per_cycle());
	printf("# metric sharers=%d\n", CHILDREN);
	printf("# metric shared_hugetlb_kb=%ld\n", t.shared_kb);
	printf("# metric private_hugetlb_kb=%ld\n", t.private_kb);
	printf("# metric pagemap_exclusive_pages=%ld\n", t.pm_exclusive);
	printf("# metric first_read_faults_max=%ld\n", t.faults_max);
	printf("# metric pmd_tables=%lu\n", GIB);
	printf("# metric wall_ns=%" PRId64 "\n", wall);
	return tap_finish();
}
