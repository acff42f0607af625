// SPDX-License-Identifier: GPL-2.0
/*
 * gup-fast-unshare-race (rendered by shootdown from a template).
 *
 * The race that 1013af4f58 ("mm/hugetlb: fix huge_pmd_unshare() vs GUP-fast race")
 * closed. The owner (the parent) maps a hugetlbfs file MAP_SHARED over one
 * PUD-aligned GiB and populates two neighbouring 2 MiB pages P and Q; a sharer
 * (a child) faults them in and so shares the owner's PMD table. In the sharer,
 * walker threads loop GUP-fast (vmsplice) over 64 KiB that straddle P and Q,
 * while the sharer's main thread unshares the table (munmap of the area, or an
 * mprotect that splits its VMA). As soon as the unshare returns, the owner, now
 * the table's only user, reuses it: it maps anonymous memory holding a canary
 * over Q (MAP_FIXED), which puts a PTE table into the PMD entry a walker reads
 * next. A walker that read the sharer's PUD before the unshare is still inside
 * the table; the kernel must wait for it (tlb_remove_table_sync_one(), an IPI
 * that IRQ-off walkers hold off, or a TLB-flush IPI that does the same) before
 * the unshare returns. Without that wait the walker follows the reused table
 * and pins the owner's canary: a page the sharer never mapped.
 *
 * shootdown's widening module holds each walker inside GUP-fast for widen_us
 * at gup_fast_folio_allowed(), between its read of P's and Q's PMD entries, so
 * the window is wide enough for the unshare and the reuse to land in it.
 * TAP 13 on stdout; exit 0 pass, 1 fail, 4 skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 20          /* unshares, each with a fresh owner, sharer and table */
#define WALKERS 1        /* GUP-fast threads in the sharer */
#define WIDEN_US 20000L     /* the widening module's delay per GUP-fast page (0: none) */
#define ROUND_MS 2000L     /* how long a round's walkers may run at most */
#define UNSHARE_MUNMAP 0           /* mprotect of the first 2 MiB: a VMA split */
#define UNSHARE_NAME "mprotect"
#define PIN_IOURING 0              /* vmsplice into a pipe: get_user_pages_fast */
#define PIN_NAME "vmsplice"
#define FAULT_CANARY 0

#define HPAGE (2UL << 20)
#define GIB_BYTES (1UL << 30)
#define PAGE 4096UL
#define PAGE_P (GIB_BYTES / HPAGE / 2 - 1) /* P and Q: two neighbouring PMD entries */
#define PAGE_Q (PAGE_P + 1)
#define SPAN (64UL << 10)                  /* GUP-fast range: 32 KiB of P, 32 KiB of Q */
#define SPAN_OFF (PAGE_Q * HPAGE - SPAN / 2)
#define SPAN_PAGES (SPAN / PAGE)
#define WORDS_PER_PAGE (PAGE / 8)
#define CANARY_TAG 0xc4a7c4a7c4a7c4a7ULL
#define WALKER_COMM "sd-gupfast"           /* the widening module delays only these */
#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#endif

_Static_assert(ROUNDS >= 1 && WALKERS >= 1, "rounds and walkers must be positive");

static char *area;

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


/* What the owner wrote at word w of the 4 KiB page at area offset off in round r. */
static uint64_t expected_word(int round, unsigned long off, unsigned long w)
{
	return mix(((uint64_t)round << 40) ^ (off / PAGE) << 12 ^ w);
}

static uint64_t canary_word(unsigned long w)
{
	return CANARY_TAG ^ w;
}

/* Shared between owner, sharer and its walkers (MAP_SHARED anonymous, outside the area). */
struct round_state {
	_Atomic int walkers_in_call;   /* walkers that entered a GUP-fast call */
	_Atomic int unshared;          /* the sharer's unshare returned */
	_Atomic int reused;            /* the owner has put the canary into the table */
	_Atomic int stop;
	_Atomic int64_t unshare_start_ns, unshare_end_ns, reuse_end_ns;
	/* The sharer's findings. */
	_Atomic long calls, canary_pages, wrong_pages, overlaps, spans;
	long q_faults;                 /* page faults to map Q after P: 0 when P's fault shared the table */
	int unshare_errno;
	int64_t unshare_ns;
};

static struct round_state *state;
static int round_index;

/* Reads back what a GUP-fast call put into the pipe and classifies each 4 KiB page. */
static void verify_span(const uint64_t *data, size_t len)
{
	for (unsigned long p = 0; p < len / PAGE; p++) {
		unsigned long off = SPAN_OFF + p * PAGE;
		bool canary = true, good = true;

		for (unsigned long w = 0; w < WORDS_PER_PAGE; w++) {
			uint64_t v = data[p * WORDS_PER_PAGE + w];

			good &= v == expected_word(round_index, off, w);
			canary &= v == canary_word(w);
		}
		if (FAULT_CANARY && round_index == 0 && p == SPAN_PAGES - 1)
			canary = true, good = false;
		if (canary)
			atomic_fetch_add(&state->canary_pages, 1);
		else if (!good)
			atomic_fetch_add(&state->wrong_pages, 1);
	}
}

/* A GUP-fast call's interval against the unshare's: in flight when it began, and after the reuse. */
static void account_call(int64_t start, int64_t end)
{
	int64_t unshare = atomic_load(&state->unshare_start_ns);

	atomic_fetch_add(&state->calls, 1);
	if (unshare && start < unshare && end > unshare) {
		atomic_fetch_add(&state->overlaps, 1);
		int64_t reused = atomic_load(&state->reuse_end_ns);
		if (reused && end > reused)
			atomic_fetch_add(&state->spans, 1);
	}
}

#if PIN_IOURING
/*
 * One walker: register the span as an io_uring fixed buffer (pin_user_pages_fast over
 * both PMD entries), copy what was pinned to a scratch memfd with WRITE_FIXED, read it
 * back and verify, unregister; until the span is no longer mapped or the round ends.
 */
static void *walker(void *arg)
{
	static __thread uint64_t buf[SPAN / 8];
	struct ring ring = { .fd = -1 };
	int scratch = (int)syscall(SYS_memfd_create, "race-scratch", 0);

	(void)arg;
	prctl(PR_SET_NAME, WALKER_COMM);
	if (scratch < 0 || ring_setup(&ring, 4))
		return NULL;
	while (!atomic_load(&state->stop)) {
		struct iovec iov = { .iov_base = area + SPAN_OFF, .iov_len = SPAN };
		int64_t start = now_ns();

		atomic_fetch_add(&state->walkers_in_call, 1);
		long rc = syscall(__NR_io_uring_register, ring.fd, IORING_REGISTER_BUFFERS, &iov, 1);
		int64_t end = now_ns();
		if (rc)
			break; /* EFAULT: the sharer no longer maps the span */
		account_call(start, end);
		int n = ring_fixed(&ring, IORING_OP_WRITE_FIXED, scratch, area + SPAN_OFF, (unsigned)SPAN, 0, 0);
		if (n > 0 && pread(scratch, buf, (size_t)n, 0) == n)
			verify_span(buf, (size_t)n);
		syscall(__NR_io_uring_register, ring.fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
	}
	close(ring.fd);
	close(scratch);
	return NULL;
}
#else
/*
 * One walker: vmsplice the span into a pipe (get_user_pages_fast over both PMD
 * entries), read it back, verify, until the span is no longer mapped or the round
 * ends.
 */
static void *walker(void *arg)
{
	static __thread uint64_t buf[SPAN / 8];
	int fds[2];

	(void)arg;
	prctl(PR_SET_NAME, WALKER_COMM);
	if (pipe(fds))
		return NULL;
	fcntl(fds[1], F_SETPIPE_SZ, (int)SPAN);
	while (!atomic_load(&state->stop)) {
		struct iovec iov = { .iov_base = area + SPAN_OFF, .iov_len = SPAN };
		int64_t start = now_ns();
		ssize_t n, got = 0;

		atomic_fetch_add(&state->walkers_in_call, 1);
		n = vmsplice(fds[1], &iov, 1, 0);
		int64_t end = now_ns();
		if (n <= 0)
			break; /* EFAULT: the sharer no longer maps the span */
		account_call(start, end);
		while (got < n) {
			ssize_t r = read(fds[0], (char *)buf + got, (size_t)(n - got));
			if (r <= 0)
				break;
			got += r;
		}
		verify_span(buf, (size_t)got);
	}
	close(fds[0]);
	close(fds[1]);
	return NULL;
}
#endif

static long minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_minflt;
}

/* The sharer: share the table, start the walkers, unshare while they walk. */
static __attribute__((noreturn)) void sharer(void)
{
	pthread_t threads[WALKERS];

	/*
	 * Reading P faults once; if that fault shared the owner's table (huge_pmd_share),
	 * Q's entry is already there and reading Q does not fault. The first call breaks
	 * the copy-on-write of the stack page it writes to, so it is not counted.
	 */
	minor_faults();
	(void)*(volatile char *)(area + PAGE_P * HPAGE);
	long before_q = minor_faults();
	(void)*(volatile char *)(area + PAGE_Q * HPAGE);
	state->q_faults = minor_faults() - before_q;

	for (int i = 0; i < WALKERS; i++)
		if (pthread_create(&threads[i], NULL, walker, NULL))
			_exit(3);
	/* Unshare while a walker is inside its call: with widening it sits in GUP-fast. */
	while (atomic_load(&state->walkers_in_call) < WALKERS)
		sched_yield();
	if (WIDEN_US > 0)
		usleep((useconds_t)(WIDEN_US / 4));
	atomic_store(&state->unshare_start_ns, now_ns());
	int rc = UNSHARE_MUNMAP ? munmap(area, GIB_BYTES) : mprotect(area, HPAGE, PROT_READ);
	state->unshare_errno = rc ? errno : 0;
	int64_t end = now_ns();
	atomic_store(&state->unshare_end_ns, end);
	state->unshare_ns = end - atomic_load(&state->unshare_start_ns);
	atomic_store(&state->unshared, 1);

	/* Let the walkers meet the reused table, then stop them. */
	int64_t deadline = now_ns() + ROUND_MS * 1000000;
	while (!atomic_load(&state->reused) && now_ns() < deadline)
		sched_yield();
	usleep((useconds_t)(2 * WIDEN_US + 1000));
	atomic_store(&state->stop, 1);
	for (int i = 0; i < WALKERS; i++)
		pthread_join(threads[i], NULL);
	_exit(0);
}

/* The owner's reuse of its now exclusive table: ordinary memory with a canary over Q. */
static bool reuse_table(void)
{
	char *q = area + PAGE_Q * HPAGE;
	void *m = mmap(q, HPAGE, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m != q)
		return false;
	/* Small pages, so the PMD entry becomes a PTE table rather than a THP. */
	madvise(q, HPAGE, MADV_NOHUGEPAGE);
	for (unsigned long p = 0; p < SPAN / 2 / PAGE; p++)
		for (unsigned long w = 0; w < WORDS_PER_PAGE; w++)
			((uint64_t *)(q + p * PAGE))[w] = canary_word(w);
	return true;
}

static char *map_area(int fd)
{
	/* Reserve twice the size to find a PUD-aligned start: PMD sharing needs the whole GiB. */
	char *reserve = mmap(NULL, 2 * GIB_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (reserve == MAP_FAILED)
		return NULL;
	char *aligned = (char *)(((uintptr_t)reserve + GIB_BYTES - 1) & ~(GIB_BYTES - 1));
	char *m = mmap(aligned, GIB_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd, 0);
	if (m != aligned)
		return NULL;
	if (aligned > reserve)
		munmap(reserve, (size_t)(aligned - reserve));
	munmap(aligned + GIB_BYTES, (size_t)(reserve + 2 * GIB_BYTES - (aligned + GIB_BYTES)));
	return m;
}

static void populate(void)
{
	for (unsigned long off = PAGE_P * HPAGE; off < (PAGE_Q + 1) * HPAGE; off += PAGE) {
		uint64_t *words = (uint64_t *)(area + off);

		for (unsigned long w = 0; w < WORDS_PER_PAGE; w++)
			words[w] = expected_word(round_index, off, w);
	}
}

int main(void)
{
	long free0, resv0, free1, resv1;
	long canary = 0, wrong = 0, overlaps = 0, spans = 0, calls = 0, unshared_rounds = 0;
	int unshare_errors = 0, lost = 0, last_errno = 0;
	int64_t unshare_max_ns = 0, unshare_total_ns = 0, round_start = now_ns();
	int not_shared = 0;

	tap_header();
	if (!hugetlb_2m_supported() || read_pool("free_hugepages") < 2)
		tap_skip_all("needs 2 free 2 MiB hugetlb pages");
#if PIN_IOURING
	struct ring probe = { .fd = -1 };
	if (ring_setup(&probe, 4))
		tap_skip_all("io_uring is not available (io_uring_setup failed)");
	close(probe.fd);
#endif
	free0 = read_pool("free_hugepages");
	resv0 = read_pool("resv_hugepages");
	state = mmap(NULL, sizeof(*state), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (state == MAP_FAILED)
		tap_bail("mmap state");
	printf("# %d rounds, %d walker(s) pinning by %s, unshare by %s, widening %ld us per GUP-fast page\n",
	       ROUNDS, WALKERS, PIN_NAME, UNSHARE_NAME, WIDEN_US);

	window_mark("begin");
	for (round_index = 0; round_index < ROUNDS; round_index++) {
		int fd = (int)syscall(SYS_memfd_create, "gup-fast-unshare-race", MFD_HUGETLB | MFD_HUGE_2MB);

		if (fd < 0)
			tap_bail("memfd_create(MFD_HUGETLB)");
		if (ftruncate(fd, (off_t)GIB_BYTES))
			tap_bail("ftruncate");
		area = map_area(fd);
		if (!area)
			tap_bail("mmap PUD-aligned area");
		populate();
		memset(state, 0, sizeof(*state));

		pid_t pid = fork();
		if (pid < 0)
			tap_bail("fork");
		if (pid == 0)
			sharer();
		while (!atomic_load(&state->unshared))
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;
		if (atomic_load(&state->unshared)) {
			if (!reuse_table())
				tap_bail("mmap canary over Q");
			atomic_store(&state->reuse_end_ns, now_ns());
			atomic_store(&state->reused, 1);
		}
		int status;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
			lost++;
		not_shared += state->q_faults != 0;
		if (state->unshare_errno) {
			unshare_errors++;
			last_errno = state->unshare_errno;
		} else if (atomic_load(&state->unshared)) {
			unshared_rounds++;
		}
		canary += atomic_load(&state->canary_pages);
		wrong += atomic_load(&state->wrong_pages);
		overlaps += atomic_load(&state->overlaps) > 0;
		spans += atomic_load(&state->spans) > 0;
		calls += atomic_load(&state->calls);
		unshare_total_ns += state->unshare_ns;
		if (state->unshare_ns > unshare_max_ns)
			unshare_max_ns = state->unshare_ns;
		munmap(area, GIB_BYTES);
		close(fd);
	}
	int64_t wall_ns = now_ns() - round_start;
	window_mark("end");

	tap_result(1, not_shared == 0, "the sharer shared the owner's PMD table in every round (%d of %d rounds faulted on Q after P)",
		   not_shared, ROUNDS);
	tap_result(2, lost == 0 && unshare_errors == 0, "every sharer unshared by %s and exited cleanly (%d lost, %d unshare errors%s%s)",
		   UNSHARE_NAME, lost, unshare_errors, last_errno ? ", last: " : "", last_errno ? strerror(last_errno) : "");
	tap_result(3, canary == 0 && wrong == 0,
		   "no GUP-fast call returned a page the sharer does not map (%ld canary pages of the owner's reused table, %ld other wrong pages, %ld calls)",
		   canary, wrong, calls);
	if (canary)
		printf("# GUP-fast walked the PMD table after the unshare returned and pinned the owner's canary: the unshare did not wait for the walker\n");
	bool pool = pool_back(free0, resv0, &free1, &resv1);
	tap_result(4, pool, "hugetlb pool back to baseline (free %ld -> %ld, reserved %ld -> %ld)", free0, free1, resv0, resv1);

	printf("# metric op=unshare\n");
	printf("# metric ops=%ld\n", unshared_rounds);
	printf("# metric overlaps=%ld\n", overlaps);
	printf("# metric spans=%ld\n", spans);
	printf("# metric canary_pages=%ld\n", canary);
	printf("# metric gup_fast_calls=%ld\n", calls);
	printf("# metric unshare_max_us=%.1f\n", unshare_max_ns / 1e3);
	printf("# metric unshare_mean_us=%.1f\n", unshared_rounds ? unshare_total_ns / 1e3 / unshared_rounds : 0.0);
	printf("# metric wall_ms=%.1f\n", wall_ns / 1e6);
	printf("# overlaps: rounds in which a GUP-fast call was in flight when the unshare began; spans: rounds in which such a call also outlasted the owner's reuse\n");
	tap_plan(4);
	return tap_finish();
}
