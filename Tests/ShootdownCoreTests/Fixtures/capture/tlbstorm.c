/* IPI-heavy work: threads spread over all CPUs while the main thread maps/unmaps
   (TLB shootdowns), plus fork/exit and sched_setaffinity migrations. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <stdio.h>
static volatile int stop;
static void *spin(void *a) {
    long cpu = (long)a; cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
    while (!stop) { sched_yield(); }
    return 0;
}
int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t t[64];
    for (long i = 0; i < ncpu && i < 64; i++) pthread_create(&t[i], 0, spin, (void *)i);
    for (int i = 0; i < iters; i++) {
        char *p = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (int j = 0; j < (1 << 16); j += 4096) p[j] = 1;
        mprotect(p, 1 << 16, PROT_READ);
        munmap(p, 1 << 16);
        if (i % 50 == 0) {
            pid_t c = fork();
            if (c == 0) _exit(0);
            waitpid(c, 0, 0);
            cpu_set_t s; CPU_ZERO(&s); CPU_SET(i / 50 % ncpu, &s);
            sched_setaffinity(0, sizeof s, &s);
        }
    }
    /* THP collapse: PTE-mapped 2 MiB ranges collapsed with MADV_COLLAPSE
       (collapse_huge_page -> tlb_remove_table_sync_one) */
    int collapsed = 0;
    for (int k = 0; k < 8; k++) {
        size_t sz = 4 << 20;
        char *r = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *a = (char *)(((unsigned long)r + (2 << 20) - 1) & ~((2UL << 20) - 1));
        madvise(a, 2 << 20, MADV_NOHUGEPAGE);
        for (int j = 0; j < (2 << 20); j += 4096) a[j] = 1;
        madvise(a, 2 << 20, MADV_HUGEPAGE);
        if (madvise(a, 2 << 20, 25 /* MADV_COLLAPSE */) == 0) collapsed++;
        munmap(r, sz);
    }
    printf("tlbstorm: collapsed %d/8\n", collapsed);
    stop = 1;
    for (long i = 0; i < ncpu && i < 64; i++) pthread_join(t[i], 0);
    printf("tlbstorm: %d iterations on %ld cpus\n", iters, ncpu);
    return 0;
}
