// SPDX-License-Identifier: GPL-2.0
/*
 * gup-pin-unshare (rendered by shootdown from a template).
 *
 * A hugetlbfs file (memfd_create MFD_HUGETLB) is mapped MAP_SHARED at a
 * PUD-aligned address. Each round, forked sharers fault the area in and so
 * share the parent's PMD tables (huge_pmd_share); the parent takes long-term
 * GUP pins on some pages (io_uring fixed buffers or vmsplice) while or before
 * the sharers unshare the tables (exit, munmap or an mprotect VMA split). The
 * data written through the pins must then be visible through every mapping
 * and the file, the pins must release cleanly, and the hugetlb pool must
 * return to its baseline. smaps and pagemap must show the sharing while it
 * lasts. TAP 13 on stdout; exit 0 pass, 1 fail, 4 skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GIB 2UL           /* size of the area, one PMD table per GiB */
#define TOUCH 8UL       /* 2 MiB pages touched per GiB */
#define PINS_PARAM 2UL   /* pinned pages per GiB, at most TOUCH */
#define SHARERS 2     /* processes that share and unshare each round */
#define ITERATIONS 10UL

#define UNSHARE_EXIT 0
#define UNSHARE_MUNMAP 1
#define UNSHARE_MPROTECT 2
#define UNSHARE UNSHARE_EXIT
#define UNSHARE_NAME "exit"
#define PIN_IOURING 1           /* io_uring fixed buffers, written by READ_FIXED */
#define PIN_NAME "io_uring fixed buffers"
#define FAULT_CORRUPT 0

#define HPAGE (2UL << 20)
#define GIB_BYTES (1UL << 30)
#define PAGES_PER_GIB (GIB_BYTES / HPAGE)
#define NPAGES (GIB * TOUCH)
#define PINS (PINS_PARAM < TOUCH ? PINS_PARAM : TOUCH)
#define NPINS (GIB * PINS)
#define PATTERN_WORDS (4096 / 8)  /* base pattern: the first 4 KiB of a page */
#define LAST_WORD (HPAGE / 8 - 1)
#define PIN_OFF (1UL << 20)       /* the range written through a pin */
#define PIN_LEN (16UL << 10)
#define PIN_WORDS (PIN_LEN / 8)
#define MPROTECT_OFF (GIB_BYTES / 2) /* unshare=mprotect: 2 MiB made read-only per GiB */
#define RING_ENTRIES 8
#define REPORT_TIMEOUT_MS 60000
#define MAX_DIAG 10               /* mismatch lines printed per process */
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

_Static_assert(GIB >= 1, "gib must be at least 1");
_Static_assert(TOUCH >= 1 && TOUCH <= PAGES_PER_GIB, "touch must be 1..512");
_Static_assert(PINS >= 1, "pins must be at least 1");
_Static_assert(PIN_OFF + PIN_LEN <= LAST_WORD * 8 && PIN_OFF >= PATTERN_WORDS * 8, "pin range");

/* What a sharer tells the parent; small enough for an atomic pipe write. */
struct report {
	int child, phase;         /* phase 1: shared, 2: unshared, 3: verified */
	int mismatches, error;    /* error: errno of a failed unshare call */
	long shared_kb, private_kb;
	long pm_shared, pm_exclusive, pm_absent; /* pagemap view of the touched pages */
};

struct totals {
	int failures;               /* check 3: mismatches, failed pins, lost sharers */
	int pin_leaks;              /* check 4: rounds whose pins did not release */
	long shared_kb;             /* fewest Shared_Hugetlb kB a sharer saw (LONG_MAX: none) */
	long private_kb;            /* most Private_Hugetlb kB a sharer saw */
	long pm_shared;             /* fewest pages a sharer saw shared in pagemap */
	long pm_exclusive, pm_absent; /* most pages a sharer saw exclusive / absent */
	int reports;                /* phase 1 reports received */
};

static char *area;
static int memfd = -1;
#if PIN_IOURING
static int srcfd = -1;       /* scratch source of the READ_FIXED writes */
#else
static int splice_pipe[2];   /* holds the vmspliced page references */
#endif
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

static uint64_t base_word(unsigned long page, unsigned long round)
{
	return mix((uint64_t)page << 32 ^ round);
}

/* What round `round` writes through pin k at word w (the range holds ~this before). */
static uint64_t pin_word(unsigned long round, unsigned long k, unsigned long w)
{
	return mix(~((uint64_t)round << 40 ^ (uint64_t)k << 20 ^ w));
}

/* Touched page i: TOUCH pages spread evenly over each GiB (each PMD table). */
static char *page_addr(unsigned long i)
{
	unsigned long gib = i / TOUCH, j = i % TOUCH;

	return area + gib * GIB_BYTES + j * (PAGES_PER_GIB / TOUCH) * HPAGE;
}

static uintptr_t page_address(unsigned long i)
{
	return (uintptr_t)page_addr(i);
}

static volatile uint64_t *page_words(unsigned long i)
{
	return (volatile uint64_t *)page_addr(i);
}

/* Pinned page k: PINS of the touched pages of each GiB, spread evenly. */
static unsigned long pin_page(unsigned long k)
{
	return (k / PINS) * TOUCH + (k % PINS) * (TOUCH / PINS);
}

static char *pin_addr(unsigned long k)
{
	return page_addr(pin_page(k)) + PIN_OFF;
}

static int mismatch(const char *who, unsigned long what, unsigned long word,
		    uint64_t got, uint64_t want)
{
	if (diag_left-- > 0)
		printf("# %s: %lu word %lu is %#" PRIx64 ", expected %#" PRIx64 "\n",
		       who, what, word, got, want);
	return 1;
}

/* ---------------------------------------------------------- pattern */

static void write_pattern(unsigned long round)
{
	for (unsigned long p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = page_words(p);
		uint64_t v = base_word(p, round);

		for (unsigned long i = 0; i < PATTERN_WORDS; i++)
			w[i] = v;
		w[LAST_WORD] = ~v;
	}
	for (unsigned long k = 0; k < NPINS; k++) {
		volatile uint64_t *w = (volatile uint64_t *)pin_addr(k);

		for (unsigned long i = 0; i < PIN_WORDS; i++)
			w[i] = ~pin_word(round, k, i);
	}
}

/* The base pattern of every touched page (reading it faults the area in). */
static int check_pattern(const char *who, unsigned long round)
{
	int bad = 0;

	for (unsigned long p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = page_words(p);
		uint64_t v = base_word(p, round);

		for (unsigned long i = 0; i < PATTERN_WORDS; i++)
			if (w[i] != v)
				bad += mismatch(who, p, i, w[i], v);
		if (w[LAST_WORD] != ~v)
			bad += mismatch(who, p, LAST_WORD, w[LAST_WORD], ~v);
	}
	return bad;
}

/* The pinned ranges as seen through this process's mapping: after (or before) the pin write. */
static int check_pin_ranges(const char *who, unsigned long round, bool after)
{
	int bad = 0;

	for (unsigned long k = 0; k < NPINS; k++) {
		volatile uint64_t *w = (volatile uint64_t *)pin_addr(k);

		for (unsigned long i = 0; i < PIN_WORDS; i++) {
			uint64_t want = after ? pin_word(round, k, i) : ~pin_word(round, k, i);

			if (w[i] != want)
				bad += mismatch(who, k, i, w[i], want);
		}
	}
	return bad;
}

/* A pinned range's content obtained elsewhere (file, pipe) against the pin write. */
static int check_buffer(const char *who, unsigned long round, unsigned long k, const uint64_t *buf)
{
	int bad = 0;

	for (unsigned long i = 0; i < PIN_WORDS; i++)
		if (buf[i] != pin_word(round, k, i))
			bad += mismatch(who, k, i, buf[i], pin_word(round, k, i));
	return bad;
}

/* ------------------------------------------------------------ views */

/* ----------------------------------------------------------- io_uring */

#if PIN_IOURING
/* Shared by shootdown's templates (Templates/_common/iouring.c.mustache): A minimal io_uring client on raw syscalls: a ring, and one fixed-buffer read or write at a time. */
struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

/* Sets up a ring of `entries`; returns 0 or -errno. */
static int ring_setup(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	size_t sq_len, cq_len;
	char *sq, *cq;
	void *sqes;
	int fd;

	memset(&p, 0, sizeof(p));
	fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (fd < 0)
		return -errno;
	sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (cq_len > sq_len)
			sq_len = cq_len;
		cq_len = sq_len;
	}
	sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
		  IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	cq = sq;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
			  IORING_OFF_CQ_RING);
		if (cq == MAP_FAILED)
			return -errno;
	}
	sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	if (sqes == MAP_FAILED)
		return -errno;
	r->fd = fd;
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	r->sqes = sqes;
	return 0;
}

/*
 * One IORING_OP_READ_FIXED (file at `off` into registered buffer `index` at `addr`) or
 * IORING_OP_WRITE_FIXED (the buffer to the file), waited for; the CQE's res or -errno.
 */
static int ring_fixed(struct ring *r, int opcode, int fd, void *addr, unsigned len, uint64_t off, unsigned index)
{
	unsigned tail = *r->sq_tail, slot = tail & *r->sq_mask, head;
	struct io_uring_sqe *sqe = &r->sqes[slot];
	int res;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = (uint8_t)opcode;
	sqe->fd = fd;
	sqe->off = off;
	sqe->addr = (uint64_t)(uintptr_t)addr;
	sqe->len = len;
	sqe->buf_index = (uint16_t)index;
	sqe->user_data = index;
	r->sq_array[slot] = slot;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	do
		res = (int)syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
	while (res < 0 && errno == EINTR);
	if (res < 0)
		return -errno;
	head = *r->cq_head;
	while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
		res = (int)syscall(__NR_io_uring_enter, r->fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0);
		if (res < 0 && errno != EINTR)
			return -errno;
	}
	res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static struct ring ring = { .fd = -1 };

/* One IORING_OP_READ_FIXED from srcfd into registered buffer `index`; the CQE's res. */
static int ring_read_fixed(unsigned index, void *dst, unsigned len, uint64_t src_off)
{
	return ring_fixed(&ring, IORING_OP_READ_FIXED, srcfd, dst, len, src_off, index);
}
#endif

/* ------------------------------------------------------------- pins */

/* Takes the pins; returns failures. GUP-fast walks the (maybe shared) PMD tables. */
static int pin_take(unsigned long round)
{
#if PIN_IOURING
	static struct iovec iov[NPINS];

	for (unsigned long k = 0; k < NPINS; k++) {
		iov[k].iov_base = page_addr(pin_page(k));
		iov[k].iov_len = HPAGE;
	}
	if (syscall(__NR_io_uring_register, ring.fd, IORING_REGISTER_BUFFERS, iov, (unsigned)NPINS)) {
		printf("# round %lu: IORING_REGISTER_BUFFERS of %lu hugetlb pages: %s\n",
		       round, NPINS, strerror(errno));
		return 1;
	}
	return 0;
#else
	for (unsigned long k = 0; k < NPINS; k++) {
		struct iovec iov = { .iov_base = pin_addr(k), .iov_len = PIN_LEN };

		while (iov.iov_len) {
			ssize_t n = vmsplice(splice_pipe[1], &iov, 1, SPLICE_F_NONBLOCK);

			if (n <= 0) {
				printf("# round %lu: vmsplice of pinned range %lu: %s\n", round, k,
				       n ? strerror(errno) : "nothing spliced");
				return 1;
			}
			iov.iov_base = (char *)iov.iov_base + n;
			iov.iov_len -= (size_t)n;
		}
	}
	return 0;
#endif
}

/* Writes the round's data through the pins (io_uring) or through our mapping (vmsplice). */
static int pin_write(unsigned long round)
{
	int failures = 0;

#if PIN_IOURING
	static uint64_t buf[PIN_WORDS];

	for (unsigned long k = 0; k < NPINS; k++) {
		for (unsigned long i = 0; i < PIN_WORDS; i++)
			buf[i] = pin_word(round, k, i);
		if (pwrite(srcfd, buf, PIN_LEN, (off_t)(k * PIN_LEN)) != (ssize_t)PIN_LEN) {
			printf("# round %lu: pwrite to the source memfd: %s\n", round, strerror(errno));
			return 1;
		}
	}
	for (unsigned long k = 0; k < NPINS; k++) {
		int res = ring_read_fixed((unsigned)k, pin_addr(k), PIN_LEN, k * PIN_LEN);

		if (res != (int)PIN_LEN) {
			printf("# round %lu: READ_FIXED into pinned range %lu: %s (res %d)\n", round, k,
			       res < 0 ? strerror(-res) : "short read", res);
			failures++;
		}
	}
#else
	for (unsigned long k = 0; k < NPINS; k++) {
		volatile uint64_t *w = (volatile uint64_t *)pin_addr(k);

		for (unsigned long i = 0; i < PIN_WORDS; i++)
			w[i] = pin_word(round, k, i);
	}
#endif
	/* hugetlbfs has no write(2): the corruption goes through our mapping. */
	if (FAULT_CORRUPT && round == 0)
		((volatile uint64_t *)pin_addr(0))[3] ^= 0xbad;
	return failures;
}

/* Compares the pinned ranges in the parent's mapping, the file and (vmsplice) the pipe. */
static int pin_verify(unsigned long round)
{
	static uint64_t buf[PIN_WORDS];
	int bad = check_pin_ranges("pinner mapping, pinned range", round, true);

	for (unsigned long k = 0; k < NPINS; k++) {
		if (pread(memfd, buf, PIN_LEN, (off_t)(pin_addr(k) - area)) != (ssize_t)PIN_LEN) {
			printf("# round %lu: pread of the hugetlb file: %s\n", round, strerror(errno));
			bad++;
			continue;
		}
		bad += check_buffer("file (pread), pinned range", round, k, buf);
	}
#if !PIN_IOURING
	/* The pipe holds references to the pages: it must deliver what is in them now. */
	for (unsigned long k = 0; k < NPINS; k++) {
		size_t got = 0;

		while (got < PIN_LEN) {
			ssize_t n = read(splice_pipe[0], (char *)buf + got, PIN_LEN - got);

			if (n <= 0) {
				printf("# round %lu: reading the vmsplice pipe: %s\n", round,
				       n ? strerror(errno) : "empty");
				return bad + 1;
			}
			got += (size_t)n;
		}
		bad += check_buffer("pipe (vmspliced), pinned range", round, k, buf);
	}
#endif
	return bad;
}

/* Releases the pins; returns failures. */
static int pin_release(unsigned long round)
{
#if PIN_IOURING
	if (syscall(__NR_io_uring_register, ring.fd, IORING_UNREGISTER_BUFFERS, NULL, 0)) {
		printf("# round %lu: IORING_UNREGISTER_BUFFERS: %s\n", round, strerror(errno));
		return 1;
	}
	return 0;
#else
	int left = -1;

	if (ioctl(splice_pipe[0], FIONREAD, &left) || left != 0) {
		printf("# round %lu: %d bytes left in the vmsplice pipe\n", round, left);
		return 1;
	}
	return 0;
#endif
}

/*
 * With the pins released, punching the pinned pages out of the file must hand
 * exactly NPINS pages back to the free pool: a page still pinned (or held by a
 * pipe) stays allocated until its last reference goes.
 */
static int punch_pinned(unsigned long round)
{
	long free0 = read_pool("free_hugepages"), free1 = -1;

	for (unsigned long k = 0; k < NPINS; k++) {
		off_t off = (off_t)(page_addr(pin_page(k)) - area);

		if (fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)HPAGE)) {
			printf("# round %lu: punching pinned page %lu: %s\n", round, k, strerror(errno));
			return 1;
		}
	}
	for (int i = 0; i < 200; i++) {
		free1 = read_pool("free_hugepages");
		if (free0 >= 0 && free1 == free0 + (long)NPINS)
			return 0;
		usleep(10000);
	}
	printf("# round %lu: punching the %lu pinned pages after unpinning freed %ld hugepages\n",
	       round, NPINS, free1 - free0);
	return 1;
}

/* ----------------------------------------------------------- sharers */

static void send_report(int fd, struct report *rep)
{
	if (write(fd, rep, sizeof(*rep)) != (ssize_t)sizeof(*rep))
		_exit(3);
}

/* Blocks until the parent closes the write end of `fd` (a barrier for all sharers). */
static void wait_release(int fd)
{
	char c;

	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static __attribute__((noreturn)) void sharer_main(unsigned long round, int idx, int rep_fd,
						   int go_unshare, int go_verify)
{
	struct report rep = { .child = idx, .phase = 1 };
	char who[48];

	snprintf(who, sizeof(who), "sharer %d round %lu", idx, round);
	/* These reads fault the area in through the parent's PMD tables. */
	rep.mismatches = check_pattern(who, round) + check_pin_ranges(who, round, false);
	read_smaps(&rep.shared_kb, &rep.private_kb);
	read_pagemap(NPAGES, page_address, &rep.pm_shared, &rep.pm_exclusive, &rep.pm_absent);
	send_report(rep_fd, &rep);
	wait_release(go_unshare);
	if (UNSHARE == UNSHARE_EXIT)
		_exit(0);

	memset(&rep, 0, sizeof(rep));
	rep.child = idx;
	rep.phase = 2;
	if (UNSHARE == UNSHARE_MUNMAP) {
		if (munmap(area, GIB * GIB_BYTES))
			rep.error = errno;
		send_report(rep_fd, &rep);
		_exit(0);
	}
	/* Splitting the VMA inside each GiB unshares that GiB's PMD table. */
	for (unsigned long g = 0; g < GIB && !rep.error; g++)
		if (mprotect(area + g * GIB_BYTES + MPROTECT_OFF, HPAGE, PROT_READ))
			rep.error = errno;
	send_report(rep_fd, &rep);
	wait_release(go_verify);
	rep.phase = 3;
	snprintf(who, sizeof(who), "sharer %d round %lu after unshare", idx, round);
	rep.mismatches = check_pattern(who, round) + check_pin_ranges(who, round, true);
	send_report(rep_fd, &rep);
	_exit(0);
}

/* Reads `want` reports of `phase`; returns how many arrived before EOF or timeout. */
static int collect(int fd, int want, int phase, unsigned long round, struct totals *t)
{
	int got = 0;

	while (got < want) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct report rep;

		if (poll(&pfd, 1, REPORT_TIMEOUT_MS) <= 0 ||
		    read(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			break;
		got++;
		if (rep.phase != phase) {
			printf("# round %lu: sharer %d sent phase %d, expected %d\n", round, rep.child,
			       rep.phase, phase);
			t->failures++;
		}
		t->failures += rep.mismatches;
		if (rep.error) {
			printf("# round %lu: sharer %d: " UNSHARE_NAME ": %s\n", round, rep.child,
			       strerror(rep.error));
			t->failures++;
		}
		if (phase != 1)
			continue;
		t->reports++;
		if (rep.shared_kb < t->shared_kb)
			t->shared_kb = rep.shared_kb;
		if (rep.private_kb > t->private_kb)
			t->private_kb = rep.private_kb;
		if (rep.pm_shared < t->pm_shared)
			t->pm_shared = rep.pm_shared;
		if (rep.pm_exclusive > t->pm_exclusive)
			t->pm_exclusive = rep.pm_exclusive;
		if (rep.pm_absent > t->pm_absent)
			t->pm_absent = rep.pm_absent;
		if (rep.pm_shared < 0 && diag_left-- > 0)
			printf("# round %lu: sharer %d could not read /proc/self/pagemap\n", round,
			       rep.child);
	}
	if (got < want) {
		printf("# round %lu: %d of %d sharers reported (phase %d)\n", round, got, want, phase);
		t->failures++;
	}
	return got;
}

static void run_round(unsigned long round, struct totals *t)
{
	int rep[2], go_unshare[2], go_verify[2], forked = 0;
	bool pin_first = round % 2 == 0, pinned = false;
	pid_t pids[SHARERS];

	write_pattern(round);
	if (pipe(rep) || pipe(go_unshare) || pipe(go_verify))
		tap_bail("pipe");
	fflush(stdout); /* sharers must not inherit buffered output */
	for (int c = 0; c < SHARERS; c++) {
		pids[c] = fork();
		if (pids[c] < 0) {
			printf("# round %lu: fork: %s\n", round, strerror(errno));
			t->failures++;
			break;
		}
		if (pids[c] == 0) {
			close(rep[0]);
			close(go_unshare[1]);
			close(go_verify[1]);
			sharer_main(round, c, rep[1], go_unshare[0], go_verify[0]);
		}
		forked++;
	}
	close(rep[1]);
	close(go_unshare[0]);
	close(go_verify[0]);

	/* All sharers have faulted the area in: the PMD tables are shared now. */
	collect(rep[0], forked, 1, round, t);
	if (pin_first) {
		pinned = !pin_take(round);
		close(go_unshare[1]);
	} else {
		close(go_unshare[1]); /* the sharers unshare while GUP-fast pins */
		pinned = !pin_take(round);
	}
	if (!pinned)
		t->failures++;

	/* Wait until every sharer has unshared. */
	if (UNSHARE == UNSHARE_EXIT) {
		for (int c = 0; c < forked; c++) {
			int status = 0;

			if (waitpid(pids[c], &status, 0) != pids[c] || !WIFEXITED(status) ||
			    WEXITSTATUS(status)) {
				printf("# round %lu: sharer %d failed (status %#x)\n", round, c, status);
				t->failures++;
			}
		}
		forked = 0;
	} else {
		collect(rep[0], forked, 2, round, t);
	}

	if (pinned) {
		t->failures += pin_write(round);
		t->failures += pin_verify(round);
	}
	close(go_verify[1]);
	if (UNSHARE == UNSHARE_MPROTECT)
		collect(rep[0], forked, 3, round, t);
	for (int c = 0; c < forked; c++) {
		int status = 0;

		if (waitpid(pids[c], &status, 0) != pids[c] || !WIFEXITED(status) ||
		    WEXITSTATUS(status)) {
			printf("# round %lu: sharer %d failed (status %#x)\n", round, c, status);
			t->failures++;
		}
	}
	close(rep[0]);
	t->failures += check_pattern("pinner", round);
	if (pinned && (pin_release(round) || punch_pinned(round)))
		t->pin_leaks++;
}

/* ------------------------------------------------------------- setup */

/* Maps the hugetlb file at a 1 GiB (PUD) aligned address. */
static void map_area(void)
{
	size_t len = GIB * GIB_BYTES, slack = GIB_BYTES;
	char *res, *aligned;

	res = mmap(NULL, len + slack, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		tap_skip_all("cannot reserve address space for a PUD-aligned area");
	aligned = (char *)(((uintptr_t)res + GIB_BYTES - 1) & ~(uintptr_t)(GIB_BYTES - 1));
	area = mmap(aligned, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED,
		    memfd, 0);
	if (area == MAP_FAILED) {
		int err = errno;

		munmap(res, len + slack);
		if (err == ENOMEM || err == EINVAL)
			tap_skip_all("cannot map the 2 MiB hugetlb file");
		errno = err;
		tap_bail("mmap of the hugetlb memfd");
	}
	if (aligned > res)
		munmap(res, (size_t)(aligned - res));
	if (aligned + len < res + len + slack)
		munmap(aligned + len, (size_t)(res + len + slack - (aligned + len)));
}

static void setup(void)
{
	memfd = memfd_create("gup-pin-unshare", MFD_HUGETLB | MFD_HUGE_2MB | MFD_CLOEXEC);
	if (memfd < 0) {
		if (errno == EINVAL || errno == ENOENT || errno == ENOSYS)
			tap_skip_all("memfd_create(MFD_HUGETLB) with 2 MiB pages not available");
		tap_bail("memfd_create(MFD_HUGETLB)");
	}
	if (ftruncate(memfd, (off_t)(GIB * GIB_BYTES)))
		tap_bail("ftruncate of the hugetlb memfd");
	map_area();
#if PIN_IOURING
	int err = ring_setup(&ring, RING_ENTRIES);

	if (err == -ENOSYS || err == -EPERM)
		tap_skip_all("io_uring is not available (io_uring_setup: ENOSYS/EPERM)");
	if (err) {
		errno = -err;
		tap_bail("io_uring_setup");
	}
	srcfd = memfd_create("gup-pin-unshare-src", MFD_CLOEXEC);
	if (srcfd < 0 || ftruncate(srcfd, (off_t)(NPINS * PIN_LEN)))
		tap_bail("source memfd");
#else
	if (pipe(splice_pipe))
		tap_bail("pipe");
	/* Each 4 KiB of a vmspliced range takes one pipe slot. */
	long want = (long)(NPINS * PIN_LEN), got = fcntl(splice_pipe[1], F_SETPIPE_SZ, want);

	if (got < want) {
		char reason[128];

		snprintf(reason, sizeof(reason), "cannot grow a pipe to %ld bytes for vmsplice", want);
		tap_skip_all(reason);
	}
#endif
}

static void teardown(void)
{
	if (munmap(area, GIB * GIB_BYTES))
		tap_bail("munmap");
	close(memfd);
#if PIN_IOURING
	close(srcfd);
	close(ring.fd); /* its buffers are unregistered; ring mappings are not hugetlb */
#else
	close(splice_pipe[0]);
	close(splice_pipe[1]);
#endif
}

int main(void)
{
	struct totals t = { .shared_kb = LONG_MAX, .private_kb = -1, .pm_shared = (long)NPAGES,
			    .pm_exclusive = -1, .pm_absent = -1 };
	long free0, resv0, free1, resv1;
	char reason[160], desc[160];

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
	setup();

	tap_plan(5);
	printf("# area %p: %lu GiB hugetlb memfd, %lu pages touched and %lu pinned per GiB, "
	       "%d sharers, %lu iterations, pin=%s, unshare=%s%s\n",
	       (void *)area, GIB, TOUCH, PINS, SHARERS, ITERATIONS, PIN_NAME, UNSHARE_NAME,
	       FAULT_CORRUPT ? ", fault=corrupt" : "");

	window_mark("begin");
	int64_t start = now_ns();
	for (unsigned long round = 0; round < ITERATIONS; round++)
		run_round(round, &t);
	int64_t wall = now_ns() - start;
	window_mark("end");

	if (!t.reports)
		t.shared_kb = t.pm_shared = -1;

	teardown();
	bool pool_ok = pool_back(free0, resv0, &free1, &resv1);

	tap_result(1, t.reports > 0 && t.shared_kb > 0,
		   "sharing visible in smaps (Shared_Hugetlb of every sharer >= %ld kB)", t.shared_kb);
	/*
	 * pagemap learned about PMD table sharing in v6.10 ("fs/proc/task_mmu:
	 * convert pagemap_hugetlb_range() to work on folios", not backported to
	 * stable): older kernels report pages mapped through a shared PMD table as
	 * exclusive (mapcount 1), so there the check only counts when it passes.
	 */
	bool pm_ok = t.reports > 0 && t.pm_shared == (long)NPAGES && t.pm_exclusive == 0 &&
		     t.pm_absent == 0;

	snprintf(desc, sizeof(desc),
		 "sharing visible in pagemap (PM_MMAP_EXCLUSIVE clear on %ld/%lu pages)",
		 t.pm_shared, NPAGES);
	if (!pm_ok && t.reports > 0 && t.pm_shared >= 0 && kernel_older_than(6, 10))
		tap_skip(2, desc, "pagemap ignores PMD table sharing before Linux 6.10");
	else
		tap_result(2, pm_ok, "%s", desc);
	tap_result(3, t.failures == 0,
		   "writes through pins visible in every mapping and the file (%s, %lu pins x %lu rounds, %d mismatches or errors)",
		   PIN_NAME, NPINS, ITERATIONS, t.failures);
	tap_result(4, t.pin_leaks == 0, "pins released (%lu of %lu rounds)",
		   ITERATIONS - (unsigned long)t.pin_leaks, ITERATIONS);
	tap_result(5, pool_ok, "hugetlb pool back to baseline (free %ld/%ld resv %ld/%ld)",
		   free1, free0, resv1, resv0);

	printf("# metric ops=%lu\n", ITERATIONS * SHARERS);
	printf("# metric op=unshare\n");
	printf("# metric shared_hugetlb_kb=%ld\n", t.shared_kb);
	printf("# metric private_hugetlb_kb=%ld\n", t.private_kb);
	printf("# metric pagemap_exclusive_pages=%ld\n", t.pm_exclusive);
	printf("# metric pagemap_absent_pages=%ld\n", t.pm_absent);
	printf("# metric pinned_pages=%lu\n", NPINS);
	printf("# metric pin_failures=%d\n", t.failures);
	printf("# metric pin_leaks=%d\n", t.pin_leaks);
	printf("# metric pages_touched=%lu\n", NPAGES);
	printf("# metric pmd_tables=%lu\n", GIB);
	printf("# metric wall_ns=%" PRId64 "\n", wall);
	return tap_finish();
}
