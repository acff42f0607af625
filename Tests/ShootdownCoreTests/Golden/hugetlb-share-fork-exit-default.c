// SPDX-License-Identifier: GPL-2.0
/*
 * hugetlb-share-fork-exit (rendered by shootdown from a template).
 *
 * Maps a PUD-aligned MAP_SHARED hugetlb area, touches pages in every GiB so
 * each PMD table is populated, then forks sharers that fault the area in
 * (huge_pmd_share) and exit (huge_pmd_unshare, and with 1013af4f58 an IPI
 * broadcast per unshared PMD table). Checks data integrity across the cycles,
 * that the hugetlb pool returns to its baseline, and that smaps and pagemap
 * show the sharing. TAP 13 on stdout; exit 0 pass, 1 fail, 4 skip.
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
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GIB 2UL        /* size of the area, one PMD table per GiB */
#define TOUCH 8UL    /* 2 MiB pages touched per GiB */
#define CHILDREN 1 /* concurrent sharers per cycle */
#define CYCLES 20UL   /* fork+exit rounds */
#define FAULT_CORRUPT 0

#define HPAGE (2UL << 20)
#define GIB_BYTES (1UL << 30)
#define PAGES_PER_GIB (GIB_BYTES / HPAGE)
#define NPAGES (GIB * TOUCH)
#define PATTERN_WORDS (4096 / 8) /* base pattern: the first 4 KiB */
#define SLOT_WORD (4096 / 8)     /* child slots follow the base pattern */
#define LAST_WORD (HPAGE / 8 - 1)
#define MAX_DIAG 10              /* mismatch lines printed per process */
#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)

_Static_assert(GIB >= 1, "gib must be at least 1");
_Static_assert(TOUCH >= 1 && TOUCH <= PAGES_PER_GIB, "touch must be 1..512");
_Static_assert(CHILDREN >= 1 && SLOT_WORD + CHILDREN < LAST_WORD, "bad children");

/* What a child tells the parent; small enough for an atomic pipe write. */
struct report {
	int child;
	int mismatches;
	long shared_kb, private_kb;
	long pm_shared, pm_exclusive, pm_absent; /* pagemap view of the touched pages */
	long faults;      /* minor faults of the first read: one per GiB when the tables are shared */
};

static char *area;
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

static uint64_t base_word(unsigned long page, unsigned long gen)
{
	return mix((uint64_t)page << 32 ^ gen);
}

static uint64_t slot_word(unsigned long cycle, int child, unsigned long page)
{
	return mix(~((uint64_t)cycle << 24 ^ (uint64_t)child << 16 ^ page));
}

/* Touched page i: TOUCH pages spread evenly over each GiB (each PMD table). */
static volatile uint64_t *page_words(unsigned long i)
{
	unsigned long gib = i / TOUCH, j = i % TOUCH;

	return (volatile uint64_t *)(area + gib * GIB_BYTES + j * (PAGES_PER_GIB / TOUCH) * HPAGE);
}

static uintptr_t touched_page(unsigned long i)
{
	return (uintptr_t)page_words(i);
}

static int mismatch(const char *who, unsigned long page, unsigned long word,
		    uint64_t got, uint64_t want)
{
	if (diag_left-- > 0)
		printf("# %s: page %lu word %lu is %#" PRIx64 ", expected %#" PRIx64 "\n",
		       who, page, word, got, want);
	return 1;
}

/* ---------------------------------------------------------- pattern */

static void write_pattern(unsigned long gen)
{
	for (unsigned long p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = page_words(p);
		uint64_t v = base_word(p, gen);

		for (unsigned long i = 0; i < PATTERN_WORDS; i++)
			w[i] = v;
		for (int c = 0; c < CHILDREN; c++)
			w[SLOT_WORD + c] = 0;
		w[LAST_WORD] = ~v;
	}
}

static int check_pattern(const char *who, unsigned long gen)
{
	int bad = 0;

	for (unsigned long p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = page_words(p);
		uint64_t v = base_word(p, gen);

		for (unsigned long i = 0; i < PATTERN_WORDS; i++)
			if (w[i] != v)
				bad += mismatch(who, p, i, w[i], v);
		if (w[LAST_WORD] != ~v)
			bad += mismatch(who, p, LAST_WORD, w[LAST_WORD], ~v);
	}
	return bad;
}

static int check_slots(unsigned long cycle)
{
	int bad = 0;

	for (unsigned long p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = page_words(p);

		for (int c = 0; c < CHILDREN; c++) {
			uint64_t want = slot_word(cycle, c, p);

			if (w[SLOT_WORD + c] != want)
				bad += mismatch("parent (child slot)", p, SLOT_WORD + c,
						w[SLOT_WORD + c], want);
		}
	}
	return bad;
}

/*
 * Reports, then waits at the barrier: the parent lets a child exit only when every
 * child of the cycle has faulted and reported, and then one at a time, in order.
 */
static __attribute__((noreturn)) void child_main(unsigned long cycle, int idx, int report_fd, int go_fd)
{
	struct report rep = { .child = idx };
	char who[32], go;

	snprintf(who, sizeof(who), "child %d cycle %lu", idx, cycle);
	prefault_stack();
	/*
	 * These reads fault the area in through the parent's PMD tables: the first read
	 * of each GiB shares its table (huge_pmd_share) and maps every touched page at
	 * once. A table that is not shared faults once per touched page.
	 */
	long faults0 = minor_faults();
	rep.mismatches = check_pattern(who, cycle);
	long faults1 = minor_faults();
	rep.faults = faults0 < 0 || faults1 < 0 ? -1 : faults1 - faults0;
	read_smaps(&rep.shared_kb, &rep.private_kb);
	read_pagemap(NPAGES, touched_page, &rep.pm_shared, &rep.pm_exclusive, &rep.pm_absent);
	for (unsigned long p = 0; p < NPAGES; p++)
		page_words(p)[SLOT_WORD + idx] = slot_word(cycle, idx, p);
	if (FAULT_CORRUPT && cycle == 0 && idx == 0)
		page_words(0)[7] ^= 0xbad;
	if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		rep.mismatches++;
	fflush(stdout);
	while (read(go_fd, &go, 1) < 0 && errno == EINTR)
		;
	_exit(rep.mismatches ? 1 : 0);
}

struct totals {
	int failures;               /* mismatches, failed or missing children */
	long shared_kb, private_kb; /* fewest shared, most private kB a child saw */
	long faults_min, faults_max; /* first-read faults per child */
	long pm_shared;             /* fewest pages a child saw shared in pagemap */
	long pm_exclusive, pm_absent; /* most pages a child saw exclusive / absent */
};

static void add_report(const struct report *rep, unsigned long cycle, struct totals *t)
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
	if (rep->pm_shared < 0 && diag_left-- > 0)
		printf("# cycle %lu: child %d could not read /proc/self/pagemap\n", cycle, rep->child);
}

/*
 * Waits for one report from each of `forked` children. A child that died before it
 * reported holds no one up: the barrier would otherwise wait for it forever.
 */
static int collect_reports(int fd, int forked, unsigned long cycle, struct totals *t)
{
	struct report rep;
	int reports = 0;

	while (reports < forked) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (poll(&pfd, 1, 100) > 0) {
			if (read(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
				break;
			add_report(&rep, cycle, t);
			reports++;
		} else if (waitpid(-1, NULL, WNOHANG) > 0) {
			printf("# cycle %lu: a child exited before it reported\n", cycle);
			break;
		}
	}
	return reports;
}

static void run_cycle(unsigned long cycle, struct totals *t)
{
	pid_t pids[CHILDREN];
	int go[CHILDREN][2];
	int fds[2], forked = 0, reports;

	write_pattern(cycle);
	if (pipe(fds))
		tap_bail("pipe");
	fflush(stdout); /* children must not inherit buffered output */
	for (int c = 0; c < CHILDREN; c++) {
		if (pipe(go[c]))
			tap_bail("pipe");
		pids[c] = fork();
		if (pids[c] < 0) {
			printf("# cycle %lu: fork: %s\n", cycle, strerror(errno));
			t->failures++;
			close(go[c][0]);
			close(go[c][1]);
			break;
		}
		if (pids[c] == 0) {
			close(fds[0]);
			child_main(cycle, c, fds[1], go[c][0]);
		}
		close(go[c][0]);
		forked++;
	}
	close(fds[1]);
	reports = collect_reports(fds[0], forked, cycle, t);
	close(fds[0]);
	if (reports != forked) {
		printf("# cycle %lu: %d of %d children reported\n", cycle, reports, forked);
		t->failures++;
	}
	/* Ordered exits: the last one leaves the parent alone with its tables. */
	for (int c = 0; c < forked; c++) {
		int status = 0;

		if (write(go[c][1], "x", 1) != 1)
			printf("# cycle %lu: cannot release child %d: %s\n", cycle, c, strerror(errno));
		close(go[c][1]);
		if (waitpid(pids[c], &status, 0) != pids[c] || !WIFEXITED(status) ||
		    WEXITSTATUS(status)) {
			printf("# cycle %lu: child %d failed (status %#x)\n", cycle, c, status);
			t->failures++;
		}
	}
	t->failures += check_pattern("parent", cycle) + check_slots(cycle);
}

/* ------------------------------------------------------------- setup */

/* Maps GIB GiB of shared hugetlb memory at a 1 GiB (PUD) aligned address. */
static void map_area(void)
{
	size_t len = GIB * GIB_BYTES, slack = GIB_BYTES;
	char *res, *aligned;

	res = mmap(NULL, len + slack, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		tap_skip_all("cannot reserve address space for a PUD-aligned area");
	aligned = (char *)(((uintptr_t)res + GIB_BYTES - 1) & ~(uintptr_t)(GIB_BYTES - 1));
	area = mmap(aligned, len, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB |
		    MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (area == MAP_FAILED) {
		int err = errno;

		munmap(res, len + slack);
		if (err == ENOMEM || err == EINVAL || err == ENOENT)
			tap_skip_all("MAP_HUGETLB with 2 MiB pages not available");
		errno = err;
		tap_bail("mmap MAP_HUGETLB");
	}
	/* Drop the reservation's slack on both sides of the area. */
	if (aligned > res)
		munmap(res, (size_t)(aligned - res));
	if (aligned + len < res + len + slack)
		munmap(aligned + len, (size_t)(res + len + slack - (aligned + len)));
}

int main(void)
{
	struct totals t = { .shared_kb = LONG_MAX, .private_kb = -1, .faults_min = LONG_MAX, .faults_max = -1,
			    .pm_shared = (long)NPAGES, .pm_exclusive = -1, .pm_absent = -1 };
	long free0, resv0, free1, resv1;
	char reason[160];

	tap_header();
	free0 = read_pool("free_hugepages");
	resv0 = read_pool("resv_hugepages");
	if (!hugetlb_2m_supported() || free0 < 0 || resv0 < 0)
		tap_skip_all("no 2 MiB hugetlb pool (" HP_DIR ")");
	if ((unsigned long)free0 < NPAGES) {
		snprintf(reason, sizeof(reason), "need %lu free 2 MiB hugepages, pool has %ld",
			 NPAGES, free0);
		tap_skip_all(reason);
	}
	map_area();

	tap_plan(5);
	printf("# area %p: %lu GiB, %lu pages touched per GiB, %d children, %lu cycles%s\n",
	       (void *)area, GIB, TOUCH, CHILDREN, CYCLES,
	       FAULT_CORRUPT ? ", fault=corrupt" : "");

	window_mark("begin");
	int64_t start = now_ns();
	for (unsigned long cycle = 0; cycle < CYCLES; cycle++)
		run_cycle(cycle, &t);
	int64_t wall = now_ns() - start;
	window_mark("end");

	if (munmap(area, GIB * GIB_BYTES))
		tap_bail("munmap");
	bool pool_ok = pool_back(free0, resv0, &free1, &resv1);

	tap_result(1, t.failures == 0, "data integrity across %lu cycles of %d sharers",
		   CYCLES, CHILDREN);
	tap_result(2, pool_ok, "hugetlb pool back to baseline (free %ld/%ld resv %ld/%ld)",
		   free1, free0, resv1, resv0);
	/* Every touched page is mapped through the parent's tables in every child. */
	long want_kb = (long)(NPAGES * (HPAGE >> 10));
	if (t.shared_kb == LONG_MAX)
		t.shared_kb = -1;
	tap_result(3, t.shared_kb == want_kb && t.private_kb == 0,
		   "PMD table sharing in smaps: every child Shared_Hugetlb %ld of %ld kB, Private_Hugetlb %ld kB",
		   t.shared_kb, want_kb, t.private_kb);
	/*
	 * pagemap learned about PMD table sharing in v6.10 ("fs/proc/task_mmu:
	 * convert pagemap_hugetlb_range() to work on folios", not backported to
	 * stable): older kernels report pages mapped through a shared PMD table as
	 * exclusive (mapcount 1), so there the check only counts when it passes.
	 */
	bool pm_ok = t.pm_shared == (long)NPAGES && t.pm_exclusive == 0 && t.pm_absent == 0;
	char pm_desc[128];

	snprintf(pm_desc, sizeof(pm_desc),
		 "pagemap shows shared pages (PM_MMAP_EXCLUSIVE clear on %ld/%lu pages)",
		 t.pm_shared, NPAGES);
	if (!pm_ok && t.pm_shared >= 0 && kernel_older_than(6, 10))
		tap_skip(4, pm_desc, "pagemap ignores PMD table sharing before Linux 6.10");
	else
		tap_result(4, pm_ok, "%s", pm_desc);
	/*
	 * A shared GiB costs one fault, a GiB whose table is not shared one per touched
	 * page: any child with GIB + TOUCH - 1 faults or more lost a share. Below that, a
	 * stray fault outside the area is tolerated (arm64 6.1 takes one per child).
	 */
	if (t.faults_min == LONG_MAX)
		t.faults_min = -1;
	if (TOUCH <= 2)
		tap_skip(5, "every PMD table shared on the first fault", "touch<=2: a table not shared costs no more than a stray fault");
	else
		tap_result(5, t.faults_min >= 1 && t.faults_max < (long)(GIB + TOUCH - 1),
			   "every PMD table shared on the first fault (%ld..%ld faults per child; %lu if shared, %lu if not)",
			   t.faults_min, t.faults_max, GIB, NPAGES);
	printf("# metric ops=%lu\n", CYCLES * CHILDREN);
	printf("# metric op=fork-exit\n");
	printf("# metric shared_hugetlb_kb=%ld\n", t.shared_kb);
	printf("# metric private_hugetlb_kb=%ld\n", t.private_kb);
	printf("# metric pagemap_exclusive_pages=%ld\n", t.pm_exclusive);
	printf("# metric pagemap_absent_pages=%ld\n", t.pm_absent);
	printf("# metric pages_touched=%lu\n", NPAGES);
	printf("# metric first_read_faults_max=%ld\n", t.faults_max);
	printf("# metric pmd_tables=%lu\n", GIB);
	printf("# metric wall_ns=%" PRId64 "\n", wall);
	return tap_finish();
}
