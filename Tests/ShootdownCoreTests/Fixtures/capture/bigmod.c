/* finit_module() on a 1 GiB sparse file: the kernel vmalloc()s the whole file
   before looking at it, and warn_alloc() reports "vmalloc error ... exceeds total pages". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
int main(void) {
    int fd = open("/tmp/big.ko", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 1L << 30)) { perror("create"); return 1; }
    close(fd);
    fd = open("/tmp/big.ko", O_RDONLY);
    long r = syscall(SYS_finit_module, fd, "", 0);
    printf("bigmod: finit_module = %ld (%s)\n", r, r ? strerror(errno) : "ok");
    unlink("/tmp/big.ko");
    return 0;
}
