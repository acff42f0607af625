// SPDX-License-Identifier: GPL-2.0
/*
 * madv-collapse (rendered by shootdown from a template).
 *
 * Populates a PMD-aligned anon or shmem region at 4 KiB granularity (THP set
 * to never), then collapses it with MADV_COLLAPSE while threads pin chunks of
 * it through GUP-fast (io_uring fixed buffers, vmsplice) and read the data
 * back through the pins. Every collapsed PMD goes through
 * pmdp_collapse_flush() and, for anon, tlb_remove_table_sync_one(), the IPI
 * broadcast that waits out concurrent GUP-fast walkers. Later rounds split
 * every PMD again and re-collapse. Checks that every collapse happened
 * (smaps), that the pins saw the pattern and that the mapping still holds it.
 * TAP 13 on stdout; exit 0 pass, 1 fail, 4 skip.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
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
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PMDS 4UL     /* region size in 2 MiB PMDs */
#define THREADS 2 /* GUP-fast pinning threads */
#define ROUNDS 1UL /* collapse rounds (split + re-collapse after the first) */
#define SHMEM 0             /* MAP_PRIVATE|MAP_ANONYMOUS */
#define GUP_IOURING 1
#define GUP_VMSPLICE 1
#define FAULT_CORRUPT 0

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

#define PAGE 4096UL
#define PMD_SIZE (2UL << 20)
#define PAGES_PER_PMD (PMD_SIZE / PAGE)
#define LEN (PMDS * PMD_SIZE)
#define CHUNK (16 * PAGE)        /* bytes pinned at a time by a thread */
#define MIN_ITERS 2              /* pin iterations per thread and round, at least */
#define COLLAPSE_TRIES 8         /* MADV_COLLAPSE calls per round while pinners run */
#define MAX_DIAG 10              /* mismatch lines printed in all */
#define CORRUPT_OFF (PAGE + 17)  /* byte fault=corrupt overwrites (PMD 0, page 1) */
#define SEED 0x6d6164762d636f6cULL

_Static_assert(PMDS >= 1 && THREADS >= 0 && ROUNDS >= 1, "bad parameters");
_Static_assert(GUP_IOURING || GUP_VMSPLICE, "no GUP method");

static char *area;
static atomic_int diag_left = MAX_DIAG;

/* ------------------------------------------------------------ TAP */

/* Shared by shootdown's templates (Templates/_common/tap.c.mustache): TAP output in the kselftest manner: a header, a plan, ok/not ok lines, a whole-test SKIP (exit 4), a bail-out (exit 1) and the totals. */
/*
 * tap_header(), tap_plan(N), tap_result()/tap_skip() for checks 1..N, return tap_finish().
 * The callers number their checks, and must report them in order: the kselftest
 * flavour lets kselftest.h number them, and stops the test where the two disagree.
 */
#include "../kselftest.h"
/*
 * The mm helpers every test of this folder links with (the mm Makefile builds each
 * with vm_util.c and thp_settings.c). vm_util.h defines pagemap bits some templates
 * define too, to the same values.
 */
#undef PM_MMAP_EXCLUSIVE
#undef PM_PRESENT
#include "vm_util.h"

static void tap_header(void)
{
	ksft_print_header();
}

static void tap_plan(int n)
{
	ksft_set_plan((unsigned int)n);
}

/* kselftest.h numbers results itself: one out of order would print under a wrong number. */
static void tap_number(int n)
{
	if (n != (int)ksft_test_num() + 1)
		ksft_exit_fail_msg("check %d reported as number %u: checks must be reported in order\n",
				   n, ksft_test_num() + 1);
}

static void tap_result(int n, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tap_result(int n, bool ok, const char *fmt, ...)
{
	char description[512];
	va_list ap;

	tap_number(n);
	va_start(ap, fmt);
	vsnprintf(description, sizeof(description), fmt, ap);
	va_end(ap);
	if (ok)
		ksft_test_result_pass("%s\n", description);
	else
		ksft_test_result_fail("%s\n", description);
}

/* "ok N description # SKIP reason": the check does not apply to this kernel. Not every test has one. */
static void __attribute__((unused)) tap_skip(int n, const char *description, const char *reason)
{
	tap_number(n);
	ksft_test_result_code(KSFT_SKIP, description, "%s", reason);
}

static __attribute__((noreturn)) void tap_skip_all(const char *reason)
{
	ksft_exit_skip("%s\n", reason);
}

static __attribute__((noreturn)) void tap_bail(const char *what)
{
	ksft_exit_fail_perror(what);
}

/* The totals, and the exit: 0 when every planned check passed or was skipped, else 1. */
static int tap_finish(void)
{
	ksft_finished();
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

static uint64_t pattern_word(unsigned long word)
{
	return mix(SEED ^ word);
}

/*
 * Compares len bytes that should hold the region's pattern from offset off.
 * Returns the number of differing bytes and prints the first few.
 */
static unsigned long check_bytes(const char *who, const void *data, unsigned long off,
				 unsigned long len)
{
	const volatile uint64_t *w = data;
	unsigned long bad = 0;

	for (unsigned long i = 0; i < len / 8; i++) {
		uint64_t want = pattern_word(off / 8 + i), got = w[i];

		if (got == want)
			continue;
		for (int b = 0; b < 8; b++) {
			unsigned long at = off + i * 8 + b;

			if ((uint8_t)(got >> (8 * b)) == (uint8_t)(want >> (8 * b)))
				continue;
			bad++;
			if (atomic_fetch_sub(&diag_left, 1) > 0)
				printf("# %s: byte %#lx (PMD %lu page %lu) is %#x, expected %#x\n",
				       who, at, at / PMD_SIZE, at % PMD_SIZE / PAGE,
				       (uint8_t)(got >> (8 * b)), (uint8_t)(want >> (8 * b)));
		}
	}
	return bad;
}

static void write_page(unsigned long page)
{
	volatile uint64_t *w = (volatile uint64_t *)(area + page * PAGE);

	for (unsigned long i = 0; i < PAGE / 8; i++)
		w[i] = pattern_word(page * PAGE / 8 + i);
}

/* ------------------------------------------------------- THP sysfs */

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

/* thp_settings.c's save and restore, as khugepaged.c uses them (thp_settings.h, the mm Makefile links it). */
#include "thp_settings.h"

struct knob {
	const char *name;
};

static struct knob thp_enabled = { .name = "enabled" };
/* Only the shmem tests set it. */
static struct knob __attribute__((unused)) thp_shmem = { .name = "shmem_enabled" };
static bool thp_saved;

/* thp_write_string() exits on a refused write: a knob the test may not set is a SKIP instead. */
static bool set_knob(struct knob *k, const char *value)
{
	char path[128];

	snprintf(path, sizeof(path), THP_DIR "/%s", k->name);
	if (access(path, W_OK))
		return false;
	if (!thp_saved) {
		thp_save_settings();
		thp_saved = true;
	}
	thp_write_string(k->name, value);
	return true;
}

static void restore_knobs(void)
{
	if (thp_saved)
		thp_restore_settings();
}

/* 0 where the kernel has no THP (vm_util.c's reader). */
static long thp_pmd_size(void)
{
	return (long)read_pmd_pagesize();
}

/* AnonHugePages (anon) or ShmemPmdMapped+FilePmdMapped (shmem) of the region's VMA, in kB. */
static long huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	long anon = -1, shmem = -1, file = -1, v;
	char line[512];
	bool ours = false;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			ours = start <= (unsigned long)area && (unsigned long)area < end;
			if (ours && end - start < LEN)
				printf("# region VMA %lx-%lx is shorter than the region\n", start, end);
		} else if (ours && sscanf(line, "AnonHugePages: %ld kB", &v) == 1) {
			anon = v;
		} else if (ours && sscanf(line, "ShmemPmdMapped: %ld kB", &v) == 1) {
			shmem = v;
		} else if (ours && sscanf(line, "FilePmdMapped: %ld kB", &v) == 1) {
			file = v;
		}
	}
	fclose(f);
	if (!SHMEM)
		return anon;
	if (shmem < 0 && file < 0)
		return -1;
	return (shmem > 0 ? shmem : 0) + (file > 0 ? file : 0);
}

/* --------------------------------------------------------- io_uring */

struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	void *sq_ptr, *cq_ptr;
	size_t sq_len, cq_len, sqes_len;
};

static bool iouring_ok = GUP_IOURING;

static int ring_setup(struct ring *r)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	memset(r, 0, sizeof(*r));
	r->fd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (r->fd < 0)
		return -errno;
	r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_len > r->sq_len)
			r->sq_len = r->cq_len;
		r->cq_len = r->sq_len;
	}
	r->sq_ptr = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			 r->fd, IORING_OFF_SQ_RING);
	if (r->sq_ptr == MAP_FAILED)
		goto fail;
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		r->cq_ptr = r->sq_ptr;
	} else {
		r->cq_ptr = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
				 r->fd, IORING_OFF_CQ_RING);
		if (r->cq_ptr == MAP_FAILED)
			goto fail;
	}
	r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		goto fail;
	r->sq_tail = (unsigned *)((char *)r->sq_ptr + p.sq_off.tail);
	r->sq_mask = (unsigned *)((char *)r->sq_ptr + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)((char *)r->sq_ptr + p.sq_off.array);
	r->cq_head = (unsigned *)((char *)r->cq_ptr + p.cq_off.head);
	r->cq_tail = (unsigned *)((char *)r->cq_ptr + p.cq_off.tail);
	r->cq_mask = (unsigned *)((char *)r->cq_ptr + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)((char *)r->cq_ptr + p.cq_off.cqes);
	return 0;
fail:
	close(r->fd);
	return -ENOMEM;
}

static void ring_free(struct ring *r)
{
	if (r->sqes && r->sqes != MAP_FAILED)
		munmap(r->sqes, r->sqes_len);
	if (r->cq_ptr && r->cq_ptr != MAP_FAILED && r->cq_ptr != r->sq_ptr)
		munmap(r->cq_ptr, r->cq_len);
	if (r->sq_ptr && r->sq_ptr != MAP_FAILED)
		munmap(r->sq_ptr, r->sq_len);
	close(r->fd);
}

/* One IORING_OP_WRITE_FIXED of registered buffer 0; returns the CQE result. */
static int ring_write_fixed(struct ring *r, int fd, void *addr, unsigned len)
{
	unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask, head;
	struct io_uring_sqe *sqe = &r->sqes[idx];
	int res;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_WRITE_FIXED;
	sqe->fd = fd;
	sqe->addr = (uintptr_t)addr;
	sqe->len = len;
	sqe->off = 0;
	sqe->buf_index = 0;
	r->sq_array[idx] = idx;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return -errno;
	head = *r->cq_head;
	if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		return -EIO;
	res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

/* Probes io_uring once; a disabled io_uring is no failure, only a diagnostic. */
static void probe_iouring(void)
{
	struct ring r;
	int err;

	if (!GUP_IOURING)
		return;
	err = ring_setup(&r);
	if (err) {
		printf("# io_uring unavailable (io_uring_setup: %s, kernel.io_uring_disabled=%ld): io_uring pins skipped\n",
		       strerror(-err), read_long("/proc/sys/kernel/io_uring_disabled"));
		iouring_ok = false;
		return;
	}
	ring_free(&r);
}

/* --------------------------------------------------------- pinners */

struct pinner {
	pthread_t tid;
	int idx;
	unsigned long round;
	unsigned long iters, pins_iouring, pins_vmsplice, bytes_checked, mismatches, errors;
	unsigned char *buf;
	struct ring ring;
	bool have_ring;
	int sink;     /* memfd the io_uring writes go to */
	int pipe[2];  /* vmsplice target */
};

static atomic_bool collapse_done;
static atomic_int pinners_started;

static void pin_error(struct pinner *p, const char *what, int err)
{
	p->errors++;
	if (atomic_fetch_sub(&diag_left, 1) > 0)
		printf("# thread %d round %lu: %s: %s\n", p->idx, p->round, what, strerror(err));
}

/* Pins [off, off+CHUNK) as an io_uring fixed buffer and reads it back through the pin. */
static void pin_iouring(struct pinner *p, unsigned long off)
{
	struct iovec iov = { .iov_base = area + off, .iov_len = CHUNK };
	char who[48];
	int res;

	if (syscall(__NR_io_uring_register, p->ring.fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
		pin_error(p, "IORING_REGISTER_BUFFERS", errno);
		return;
	}
	res = ring_write_fixed(&p->ring, p->sink, area + off, CHUNK);
	if (syscall(__NR_io_uring_register, p->ring.fd, IORING_UNREGISTER_BUFFERS, NULL, 0) < 0)
		pin_error(p, "IORING_UNREGISTER_BUFFERS", errno);
	if (res != (int)CHUNK) {
		pin_error(p, "IORING_OP_WRITE_FIXED", res < 0 ? -res : EIO);
		return;
	}
	if (pread(p->sink, p->buf, CHUNK, 0) != (ssize_t)CHUNK) {
		pin_error(p, "pread of the io_uring sink", errno);
		return;
	}
	snprintf(who, sizeof(who), "io_uring pin, thread %d round %lu", p->idx, p->round);
	p->mismatches += check_bytes(who, p->buf, off, CHUNK);
	p->bytes_checked += CHUNK;
	p->pins_iouring++;
}

/* vmsplices [off, off+CHUNK) into a pipe (GUP-fast page references) and reads it out. */
static void pin_vmsplice(struct pinner *p, unsigned long off)
{
	struct iovec iov = { .iov_base = area + off, .iov_len = CHUNK };
	unsigned long got = 0;
	ssize_t n;
	char who[48];

	while (iov.iov_len) {
		n = vmsplice(p->pipe[1], &iov, 1, 0);
		if (n <= 0) {
			pin_error(p, "vmsplice", n ? errno : EIO);
			break;
		}
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= (size_t)n;
		/* Drain what was spliced so far, so a small pipe cannot block us. */
		while (got < CHUNK - iov.iov_len) {
			n = read(p->pipe[0], p->buf + got, CHUNK - iov.iov_len - got);
			if (n <= 0) {
				pin_error(p, "read from the vmsplice pipe", n ? errno : EIO);
				return;
			}
			got += (unsigned long)n;
		}
	}
	if (got != CHUNK)
		return;
	snprintf(who, sizeof(who), "vmsplice pin, thread %d round %lu", p->idx, p->round);
	p->mismatches += check_bytes(who, p->buf, off, CHUNK);
	p->bytes_checked += CHUNK;
	p->pins_vmsplice++;
}

static void *pinner_main(void *arg)
{
	struct pinner *p = arg;
	unsigned long off = (LEN / (THREADS ? THREADS : 1)) * (unsigned long)p->idx;
	unsigned long iters = 0;

	off -= off % CHUNK;
	atomic_fetch_add(&pinners_started, 1);
	while (iters < MIN_ITERS || !atomic_load(&collapse_done)) {
		bool use_ring = p->have_ring && (!GUP_VMSPLICE || iters % 2 == 0);

		if (use_ring)
			pin_iouring(p, off);
		else if (GUP_VMSPLICE)
			pin_vmsplice(p, off);
		else
			break; /* io_uring only, and it is unavailable */
		iters++;
		off = (off + CHUNK) % LEN;
	}
	p->iters += iters;
	return NULL;
}

static void pinners_init(struct pinner *pins)
{
	for (int i = 0; i < THREADS; i++) {
		struct pinner *p = &pins[i];
		int err;

		p->idx = i;
		p->buf = aligned_alloc(PAGE, CHUNK);
		if (!p->buf)
			tap_bail("aligned_alloc");
		if (pipe2(p->pipe, O_CLOEXEC))
			tap_bail("pipe2");
		if (fcntl(p->pipe[1], F_SETPIPE_SZ, (int)CHUNK) < 0)
			printf("# F_SETPIPE_SZ: %s (vmsplice drains in parts)\n", strerror(errno));
		p->sink = memfd_create("madv-collapse-sink", MFD_CLOEXEC);
		if (p->sink < 0)
			tap_bail("memfd_create");
		if (ftruncate(p->sink, CHUNK))
			tap_bail("ftruncate");
		if (iouring_ok) {
			err = ring_setup(&p->ring);
			if (err)
				pin_error(p, "io_uring_setup", -err);
			else
				p->have_ring = true;
		}
	}
}

static void pinners_start(struct pinner *pins, unsigned long round)
{
	atomic_store(&collapse_done, false);
	atomic_store(&pinners_started, 0);
	for (int i = 0; i < THREADS; i++) {
		pins[i].round = round;
		errno = pthread_create(&pins[i].tid, NULL, pinner_main, &pins[i]);
		if (errno)
			tap_bail("pthread_create");
	}
	/* Collapse only once every thread is pinning. */
	while (atomic_load(&pinners_started) < THREADS)
		sched_yield();
}

static void pinners_stop(struct pinner *pins)
{
	atomic_store(&collapse_done, true);
	for (int i = 0; i < THREADS; i++)
		pthread_join(pins[i].tid, NULL);
}

/* ------------------------------------------------------------- setup */

/*
 * Maps LEN bytes at a PMD-aligned address; the PROT_NONE rest of the
 * reservation stays on both sides as guards, so the region's VMA cannot
 * merge with a neighbour and smaps shows it alone.
 */
static void map_region(void)
{
	size_t reserve = LEN + 2 * PMD_SIZE;
	char *res, *aligned;
	int fd = -1, flags = MAP_FIXED;

	res = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		tap_bail("mmap reservation");
	aligned = (char *)(((uintptr_t)res + 2 * PMD_SIZE - 1) & ~(uintptr_t)(PMD_SIZE - 1));
	if (SHMEM) {
		fd = memfd_create("madv-collapse", MFD_CLOEXEC);
		if (fd < 0)
			tap_bail("memfd_create");
		if (ftruncate(fd, (off_t)LEN))
			tap_bail("ftruncate");
		flags |= MAP_SHARED;
	} else {
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
	}
	area = mmap(aligned, LEN, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (area == MAP_FAILED)
		tap_bail("mmap region");
	if (fd >= 0)
		close(fd);
}

/* Makes every PMD of the region PTE-mapped again: one 4 KiB page dropped and rewritten. */
static void split_region(unsigned long round)
{
	unsigned long page = 1 + (round * 37) % (PAGES_PER_PMD - 1);

	for (unsigned long pmd = 0; pmd < PMDS; pmd++) {
		unsigned long p = pmd * PAGES_PER_PMD + page;

		/* MADV_REMOVE punches a hole in the shmem file, which splits the folio. */
		if (madvise(area + p * PAGE, PAGE, SHMEM ? MADV_REMOVE : MADV_DONTNEED))
			tap_bail(SHMEM ? "madvise(MADV_REMOVE)" : "madvise(MADV_DONTNEED)");
		write_page(p);
	}
}

struct collapse_stats {
	unsigned long calls, eagain, collapsed, failed_rounds, quiesced;
	int64_t ns;
};

/*
 * MADV_COLLAPSE over the region, retried up to tries times while it says
 * EAGAIN, which a page pinned at the wrong moment causes (the refcount check
 * in the scan or in the isolation); the backoff lets the pinners move on.
 */
static int collapse_region(struct collapse_stats *s, int tries)
{
	int64_t t0 = now_ns();
	int ret = 0;

	for (int i = 0; i < tries; i++) {
		if (i)
			usleep(1000U << (i < 5 ? i : 5));
		s->calls++;
		ret = madvise(area, LEN, MADV_COLLAPSE) ? errno : 0;
		if (ret != EAGAIN)
			break;
		s->eagain++;
	}
	s->ns += now_ns() - t0;
	return ret;
}

int main(void)
{
	struct pinner pins[THREADS > 0 ? THREADS : 1];
	struct collapse_stats cs = { 0 };
	unsigned long map_bad = 0, pin_bad = 0, pin_errors = 0, bytes_checked = 0;
	unsigned long pins_iouring = 0, pins_vmsplice = 0, iters = 0;
	long before_kb = 0, after_kb = 0, want_kb = (long)(LEN >> 10);
	bool collapse_ok = true;

	tap_header();
	if (thp_pmd_size() != (long)PMD_SIZE)
		tap_skip_all("THP with 2 MiB PMDs unavailable (" THP_DIR "/hpage_pmd_size)");
	atexit(restore_knobs);
	/* Faults and khugepaged stay at 4 KiB; MADV_COLLAPSE ignores these settings. */
	if (!set_knob(&thp_enabled, "never"))
		tap_skip_all("cannot set " THP_DIR "/enabled to never (needs root)");
	if (SHMEM && !set_knob(&thp_shmem, "never"))
		tap_skip_all("cannot set " THP_DIR "/shmem_enabled to never (needs root)");
	probe_iouring();

	map_region();
	for (unsigned long p = 0; p < LEN / PAGE; p++)
		write_page(p);
	memset(pins, 0, sizeof(pins));
	pinners_init(pins);

	window_mark("begin");
	int64_t start = now_ns();
	for (unsigned long round = 0; round < ROUNDS; round++) {
		int err;

		if (round)
			split_region(round);
		before_kb = huge_kb();
		pinners_start(pins, round);
		err = collapse_region(&cs, COLLAPSE_TRIES);
		pinners_stop(pins);
		if (err == EAGAIN) {
			/* Still losing to the pins: once more without them (retry once, as khugepaged.c). */
			cs.quiesced++;
			printf("# round %lu: MADV_COLLAPSE still EAGAIN after %d tries with pinners running, retrying without them\n",
			       round, COLLAPSE_TRIES);
			err = collapse_region(&cs, 2);
		}
		after_kb = huge_kb();
		if (err == EINVAL && round == 0)
			tap_skip_all("MADV_COLLAPSE not supported (EINVAL)");
		if (after_kb > before_kb)
			cs.collapsed += (unsigned long)(after_kb - before_kb) / (PMD_SIZE >> 10);
		if (err || before_kb != 0 || after_kb != want_kb) {
			collapse_ok = false;
			cs.failed_rounds++;
			if (atomic_fetch_sub(&diag_left, 1) > 0)
				printf("# round %lu: MADV_COLLAPSE %s, PMD-mapped %ld kB before, %ld kB after (want 0 and %ld)\n",
				       round, err ? strerror(err) : "ok", before_kb, after_kb, want_kb);
		}
		if (FAULT_CORRUPT && round == ROUNDS - 1)
			area[CORRUPT_OFF] ^= 0x5a;
		map_bad += check_bytes("mapping", area, 0, LEN);
	}
	int64_t wall = now_ns() - start;
	window_mark("end");

	for (int i = 0; i < THREADS; i++) {
		pin_bad += pins[i].mismatches;
		pin_errors += pins[i].errors;
		bytes_checked += pins[i].bytes_checked;
		pins_iouring += pins[i].pins_iouring;
		pins_vmsplice += pins[i].pins_vmsplice;
		iters += pins[i].iters;
	}

	tap_plan(3);
	printf("# region %p: %lu PMDs %s, %d threads pinning (%s%s%s), %lu rounds%s\n",
	       (void *)area, PMDS, SHMEM ? "shmem (memfd)" : "anon", THREADS,
	       GUP_IOURING ? (iouring_ok ? "io_uring" : "io_uring unavailable") : "",
	       GUP_IOURING && GUP_VMSPLICE ? " + " : "", GUP_VMSPLICE ? "vmsplice" : "",
	       ROUNDS, FAULT_CORRUPT ? ", fault=corrupt" : "");
	printf("# MADV_COLLAPSE: %lu calls, %lu EAGAIN, %lu PMDs collapsed, %lu rounds finished without pinners\n",
	       cs.calls, cs.eagain, cs.collapsed, cs.quiesced);

	tap_result(1, collapse_ok, "every collapse happened (%lu of %lu rounds, %ld kB PMD-mapped, want %ld)",
		   ROUNDS - cs.failed_rounds, ROUNDS, after_kb, want_kb);
	if (!THREADS || (!pins_iouring && !pins_vmsplice && !pin_errors)) {
		tap_skip(2, "bytes seen through the pins match the pattern",
			 THREADS ? "no pins taken (io_uring unavailable)" : "no pins taken (threads=0)");
	} else {
		tap_result(2, pin_bad == 0 && pin_errors == 0,
			   "bytes seen through the pins match the pattern (%lu io_uring, %lu vmsplice pins, %lu of %lu bytes differ, %lu errors)",
			   pins_iouring, pins_vmsplice, pin_bad, bytes_checked, pin_errors);
	}
	tap_result(3, map_bad == 0, "bytes read through the mapping after each collapse match (%lu of %lu differ)",
		   map_bad, LEN * ROUNDS);

	printf("# metric ops=%lu\n", cs.collapsed);
	printf("# metric op=pmd-collapse\n");
	printf("# metric pmds=%lu\n", PMDS);
	printf("# metric rounds=%lu\n", ROUNDS);
	printf("# metric collapse_calls=%lu\n", cs.calls);
	printf("# metric collapse_eagain=%lu\n", cs.eagain);
	printf("# metric collapse_quiesced=%lu\n", cs.quiesced);
	printf("# metric collapse_ns=%" PRId64 "\n", cs.ns);
	printf("# metric pins_iouring=%lu\n", pins_iouring);
	printf("# metric pins_vmsplice=%lu\n", pins_vmsplice);
	printf("# metric pin_iterations=%lu\n", iters);
	printf("# metric pin_bytes_checked=%lu\n", bytes_checked);
	printf("# metric huge_kb=%ld\n", after_kb);
	printf("# metric wall_ns=%" PRId64 "\n", wall);
	return tap_finish();
}
