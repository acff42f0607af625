// SPDX-License-Identifier: GPL-2.0
/*
 * collapse-gup-fast-race (rendered by shootdown from a template).
 *
 * The race that "mm/khugepaged: fix GUP-fast interaction by sending IPI"
 * (2ba99c5e0881) closed. A walker thread loops GUP-fast (vmsplice) over a
 * PTE-mapped anonymous PMD while the main thread collapses it with
 * MADV_COLLAPSE, unmaps it and refills freed pages with pipe buffers of fake
 * PTEs. The collapse clears the PMD entry and deposits the old PTE table; the
 * unmap's zap of the huge PMD frees that table at once. A walker that read the PMD entry
 * before the collapse is still inside the old table; the kernel must wait for
 * it (tlb_remove_table_sync_one(), an IPI that IRQ-off walkers hold off, or a
 * TLB-flush IPI that does the same) before the collapse goes on. Without that
 * wait the walker reads a fake PTE from a pipe buffer and takes the struct page
 * of a frame that does not exist: an oops, which the host counts as a FAIL.
 *
 * shootdown's widening module holds the walker for widen_us at
 * __pte_offset_map(), after GUP-fast read the PMD entry and before it reads the
 * PTEs, so that the collapse, the unmap and the refill land inside the window.
 * TAP 13 on stdout; exit 0 pass, 1 fail, 4 skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 20             /* collapses, each of a freshly populated PMD */
#define WIDEN_US 50000L        /* the widening module's delay per PTE-table walk (0: none) */
#define REFILL_PAGES 64 /* pipe buffers of fake PTEs written after the unmap */
#define FAULT_REFILL 0

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031
#endif

#define PAGE 4096UL
#define PMD_SIZE (2UL << 20)
#define WORDS_PER_PAGE (PAGE / 8)
#define SPAN (16 * PAGE)                 /* GUP-fast range: 16 PTEs of the table */
#define SPAN_OFF (100 * PAGE)
#define COLLAPSE_TRIES 8                 /* MADV_COLLAPSE calls per round while it says EAGAIN */
#define WALKER_COMM "sd-gupfast"         /* the widening module delays only this thread */
#define WALKER_CPU 1
#define WALKER_STACK (256UL << 10)
#define MAIN_CPU 0
/*
 * A present, user-readable PTE of page frame 0x7fff0000 (8 TiB): no guest has it,
 * so its struct page is not in the vmemmap and GUP-fast faults on it. Every slot of
 * a refill page holds it, whichever PTE the walker reads.
 */
#if defined(__aarch64__)
#define FAKE_PTE 0x006007fff0000fc3ULL   /* VALID|PAGE|USER|RDONLY|SH|AF|nG, PXN|UXN */
#elif defined(__x86_64__)
#define FAKE_PTE 0x800007fff0000025ULL   /* PRESENT|USER|ACCESSED, NX */
#else
#error "collapse-gup-fast-race knows the PTE format of x86_64 and aarch64 only"
#endif

_Static_assert(ROUNDS >= 1 && REFILL_PAGES >= 1, "rounds and refill_pages must be positive");

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

/* Shared by shootdown's templates (Templates/_common/thp.c.mustache): THP sysfs knobs set for the test and restored at exit, the PMD size, and one-number sysfs reads. */
#define THP_DIR "/sys/kernel/mm/transparent_hugepage"

/* One number from a sysfs or procfs file, -1 if unreadable. Not every template reads one. */
static long __attribute__((unused)) read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

struct knob {
	const char *path;
	char saved[32];
	bool changed;
};

static struct knob thp_enabled = { .path = THP_DIR "/enabled" };
static struct knob thp_shmem = { .path = THP_DIR "/shmem_enabled" };

/* The bracketed word of a sysfs THP setting ("always [madvise] never"). */
static bool read_knob(const char *path, char *out, size_t size)
{
	char buf[256], *open, *close;
	FILE *f = fopen(path, "r");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok || !(open = strchr(buf, '[')) || !(close = strchr(open, ']')))
		return false;
	snprintf(out, size, "%.*s", (int)(close - open - 1), open + 1);
	return true;
}

static bool write_knob(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = write(fd, value, strlen(value));
	close(fd);
	return n == (ssize_t)strlen(value);
}

static bool set_knob(struct knob *k, const char *value)
{
	if (!read_knob(k->path, k->saved, sizeof(k->saved)))
		return false;
	if (!strcmp(k->saved, value))
		return true;
	if (!write_knob(k->path, value))
		return false;
	k->changed = true;
	return true;
}

static void restore_knobs(void)
{
	if (thp_enabled.changed && !write_knob(thp_enabled.path, thp_enabled.saved))
		printf("# could not restore %s to %s\n", thp_enabled.path, thp_enabled.saved);
	if (thp_shmem.changed && !write_knob(thp_shmem.path, thp_shmem.saved))
		printf("# could not restore %s to %s\n", thp_shmem.path, thp_shmem.saved);
}

/* The PMD size THP maps with; -1 where the kernel has no THP. */
static long thp_pmd_size(void)
{
	return read_long(THP_DIR "/hpage_pmd_size");
}

/* What the main thread wrote at word w of the 4 KiB page at area offset off in round r. */
static uint64_t expected_word(int round, unsigned long off, unsigned long w)
{
	return mix(((uint64_t)round << 40) ^ (off / PAGE) << 12 ^ w);
}

/* Between the main thread and the walker of one round. */
struct round_state {
	_Atomic int walker_in_call;      /* the walker entered a GUP-fast call */
	_Atomic int stop;
	_Atomic int walker_done;         /* out of its loop, its pipe (and the pages in it) closed */
	_Atomic int64_t collapse_start_ns, refill_end_ns;
	/* The walker's findings. */
	long calls_entered, calls_returned, refill_pages_seen, wrong_pages;
	bool overlap, span;
};

static struct round_state state;
static int round_index;
/* The walker's read-back buffer, faulted in by main: a fault in the walker would be widened too. */
static uint64_t walker_buf[SPAN / 8];

static void pin_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* Classifies each 4 KiB page a GUP-fast call returned. */
static void verify_span(const uint64_t *data, size_t len)
{
	for (unsigned long p = 0; p < len / PAGE; p++) {
		const uint64_t *words = data + p * WORDS_PER_PAGE;
		bool good = true, refill = true;

		for (unsigned long w = 0; w < WORDS_PER_PAGE; w++) {
			good &= words[w] == expected_word(round_index, SPAN_OFF + p * PAGE, w);
			refill &= words[w] == FAKE_PTE;
		}
		if (FAULT_REFILL && round_index == 0 && p == 0)
			refill = true, good = false;
		if (refill)
			state.refill_pages_seen++;
		else if (!good)
			state.wrong_pages++;
	}
}

/*
 * The walker: vmsplice the span into a pipe (get_user_pages_fast, with IRQs off, over
 * one PTE table), read it back and check it, until the collapse begins. Before each call it
 * drains its CPU's LRU batches (MADV_COLD of a page it never touched), so that
 * MADV_COLLAPSE's lru_add_drain_all() need not wait for this CPU while the walker
 * sits in the widened window.
 */
static void *walker(void *arg)
{
	uint64_t *buf = walker_buf;
	char *untouched = arg;
	int fds[2];

	prctl(PR_SET_NAME, WALKER_COMM);
	pin_to_cpu(WALKER_CPU);
	if (pipe(fds)) {
		atomic_store(&state.walker_done, 1);
		return NULL;
	}
	fcntl(fds[1], F_SETPIPE_SZ, (int)SPAN);
	/*
	 * No new call once the collapse began: the call in flight is the race, and pages a
	 * later call held in the pipe would fail MADV_COLLAPSE's refcount check (EAGAIN).
	 */
	while (!atomic_load(&state.stop) && !atomic_load(&state.collapse_start_ns)) {
		struct iovec iov = { .iov_base = area + SPAN_OFF, .iov_len = SPAN };
		ssize_t n, got = 0;

		madvise(untouched, PAGE, MADV_COLD);
		int64_t start = now_ns();
		state.calls_entered++;
		atomic_store(&state.walker_in_call, 1);
		n = vmsplice(fds[1], &iov, 1, 0);
		int64_t end = now_ns();
		state.calls_returned++;
		if (n <= 0)
			break;
		int64_t collapse = atomic_load(&state.collapse_start_ns);
		if (collapse && start < collapse && end > collapse) {
			state.overlap = true;
			int64_t refilled = atomic_load(&state.refill_end_ns);
			if (refilled && end > refilled)
				state.span = true;
		}
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
	atomic_store(&state.walker_done, 1);
	return NULL;
}

/*
 * Maps len bytes at the start of a PMD of their own, with PROT_NONE guards: smaps shows
 * the VMA alone, and nothing else of the process shares its PMD entry.
 */
static char *map_pmd_aligned(size_t len)
{
	char *reserve = mmap(NULL, 3 * PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (reserve == MAP_FAILED)
		return NULL;
	char *aligned = (char *)(((uintptr_t)reserve + PMD_SIZE) & ~(PMD_SIZE - 1));
	char *m = mmap(aligned, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	return m == aligned ? m : NULL;
}

/* AnonHugePages of the PMD's VMA in kB, or -1. */
static long anon_huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool ours = false;
	long kb = -1, v;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			ours = start == (unsigned long)area;
		else if (ours && sscanf(line, "AnonHugePages: %ld kB", &v) == 1)
			kb = v;
	}
	fclose(f);
	return kb;
}

/* Writes the round's pattern into every 4 KiB page: 512 small pages in a fresh PTE table. */
static void populate(void)
{
	for (unsigned long off = 0; off < PMD_SIZE; off += PAGE) {
		uint64_t *words = (uint64_t *)(area + off);

		for (unsigned long w = 0; w < WORDS_PER_PAGE; w++)
			words[w] = expected_word(round_index, off, w);
	}
}

int main(void)
{
	static uint64_t refill[REFILL_PAGES * WORDS_PER_PAGE];
	long calls = 0, refill_seen = 0, wrong = 0, died = 0;
	long overlaps = 0, spans = 0, collapsed = 0, attempts = 0, eagain = 0, not_huge = 0;
	int64_t collapse_max_ns = 0, collapse_total_ns = 0, wall_start = now_ns();
	int last_err = 0, refill_pipe[2];

	tap_header();
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		tap_skip_all("needs 2 CPUs: the walker and the collapse run on different ones");
	if (thp_pmd_size() != (long)PMD_SIZE)
		tap_skip_all("THP with 2 MiB PMDs unavailable (" THP_DIR "/hpage_pmd_size)");
	atexit(restore_knobs);
	/* Faults stay at 4 KiB (a PTE table to collapse); MADV_COLLAPSE ignores the setting. */
	if (!set_knob(&thp_enabled, "never"))
		tap_skip_all("cannot set " THP_DIR "/enabled to never (needs root)");
	area = map_pmd_aligned(PMD_SIZE);
	/* In a PMD of its own, so the walker's MADV_COLD finds no PTE table to walk (and be delayed in). */
	char *untouched = map_pmd_aligned(PAGE);
	if (!area || !untouched)
		tap_bail("mmap");
	if (pipe(refill_pipe))
		tap_bail("pipe");
	if (fcntl(refill_pipe[1], F_SETPIPE_SZ, (int)(REFILL_PAGES * PAGE)) < (int)(REFILL_PAGES * PAGE))
		tap_bail("F_SETPIPE_SZ of the refill pipe");
	for (unsigned long w = 0; w < REFILL_PAGES * WORDS_PER_PAGE; w++)
		refill[w] = FAKE_PTE;
	/*
	 * The walker runs on a stack of our own, faulted in once: glibc drops the pages of a
	 * cached thread stack (MADV_DONTNEED), and every fault to get them back would pass
	 * the widening point too.
	 */
	static char walker_stack[WALKER_STACK] __attribute__((aligned(4096)));
	pthread_attr_t walker_attr;
	memset(walker_stack, 0, sizeof(walker_stack));
	memset(walker_buf, 0, sizeof(walker_buf));
	if (pthread_attr_init(&walker_attr) || pthread_attr_setstack(&walker_attr, walker_stack, sizeof(walker_stack)))
		tap_bail("pthread_attr_setstack");
	pin_to_cpu(MAIN_CPU);
	printf("# %d rounds, walker pinning by vmsplice on CPU %d, collapse on CPU %d, %d refill pages, widening %ld us per PTE-table walk\n",
	       ROUNDS, WALKER_CPU, MAIN_CPU, REFILL_PAGES, WIDEN_US);

	window_mark("begin");
	for (round_index = 0; round_index < ROUNDS; round_index++) {
		pthread_t thread;
		int err = 0;

		if (round_index && mmap(area, PMD_SIZE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != area)
			tap_bail("mmap of the PMD again");
		populate();
		memset(&state, 0, sizeof(state));
		if (pthread_create(&thread, &walker_attr, walker, untouched))
			tap_bail("pthread_create");
		/* Collapse while the walker is inside its call: with widening it sits in the PTE table. */
		while (!atomic_load(&state.walker_in_call))
			sched_yield();
		usleep(1000);
		int64_t t0 = now_ns();
		atomic_store(&state.collapse_start_ns, t0);
		for (int i = 0; i < COLLAPSE_TRIES; i++) {
			attempts++;
			err = madvise(area, PMD_SIZE, MADV_COLLAPSE) ? errno : 0;
			if (err != EAGAIN)
				break;
			eagain++;
			/* Pages the walker's last call left in its pipe fail the refcount check: wait them out. */
			for (int waited = 0; !atomic_load(&state.walker_done) && waited < 1000; waited++)
				usleep(1000);
			usleep(1000);
		}
		int64_t collapse_ns = now_ns() - t0;
		long huge = anon_huge_kb();
		/* Free the deposited table, and at once give its page to a pipe buffer of fake PTEs. */
		if (munmap(area, PMD_SIZE))
			tap_bail("munmap");
		if (write(refill_pipe[1], refill, sizeof(refill)) != (ssize_t)sizeof(refill))
			tap_bail("write of the refill pipe");
		atomic_store(&state.refill_end_ns, now_ns());
		/* A walker held in the freed table comes out of its window within WIDEN_US. */
		usleep((useconds_t)(WIDEN_US + 1000));
		atomic_store(&state.stop, 1);
		pthread_join(thread, NULL);
		for (size_t got = 0; got < sizeof(refill);) {
			ssize_t r = read(refill_pipe[0], (char *)refill + got, sizeof(refill) - got);
			if (r <= 0)
				tap_bail("read of the refill pipe");
			got += (size_t)r;
		}

		if (err == EINVAL && round_index == 0)
			tap_skip_all("MADV_COLLAPSE not supported (EINVAL)");
		if (err || huge != (long)(PMD_SIZE >> 10)) {
			not_huge++;
			last_err = err;
		} else {
			collapsed++;
		}
		collapse_total_ns += collapse_ns;
		if (collapse_ns > collapse_max_ns)
			collapse_max_ns = collapse_ns;
		calls += state.calls_returned;
		died += state.calls_entered - state.calls_returned;
		refill_seen += state.refill_pages_seen;
		wrong += state.wrong_pages;
		overlaps += state.overlap;
		spans += state.span;
	}
	int64_t wall_ns = now_ns() - wall_start;
	window_mark("end");

	tap_result(1, not_huge == 0, "every MADV_COLLAPSE made the PMD huge (%ld of %d rounds did not%s%s)",
		   not_huge, ROUNDS, last_err ? ", last: " : "", last_err ? strerror(last_err) : "");
	tap_result(2, refill_seen == 0 && wrong == 0,
		   "every GUP-fast call returned the round's pattern (%ld refill pages, %ld other wrong pages, %ld calls)",
		   refill_seen, wrong, calls);
	if (refill_seen)
		printf("# GUP-fast returned a pipe buffer of fake PTEs: it walked the freed PTE table and took what the refill put there\n");
	tap_result(3, died == 0, "every GUP-fast call returned (%ld walker calls never came back)", died);
	if (died)
		printf("# the walker died inside GUP-fast: look for the kernel's oops in the console\n");

	printf("# metric op=pmd-collapse\n");
	printf("# metric ops=%ld\n", collapsed);
	printf("# metric collapse_attempts=%ld\n", attempts);
	printf("# metric collapse_eagain=%ld\n", eagain);
	printf("# metric overlaps=%ld\n", overlaps);
	printf("# metric spans=%ld\n", spans);
	printf("# metric refill_pages_seen=%ld\n", refill_seen);
	printf("# metric gup_fast_calls=%ld\n", calls);
	printf("# metric collapse_max_us=%.1f\n", collapse_max_ns / 1e3);
	printf("# metric collapse_mean_us=%.1f\n", collapse_total_ns / 1e3 / ROUNDS);
	printf("# metric wall_ms=%.1f\n", wall_ns / 1e6);
	printf("# overlaps: rounds in which a GUP-fast call was in flight when the collapse began; spans: rounds in which such a call also outlasted the refill\n");
	tap_plan(3);
	return tap_finish();
}
