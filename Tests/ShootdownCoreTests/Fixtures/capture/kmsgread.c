/* read /dev/kmsg records until EAGAIN (or max N records); write each record verbatim */
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdio.h>
int main(int argc, char **argv) {
    long max = argc > 1 ? atol(argv[1]) : 1000000;
    int fromend = argc > 2 && !strcmp(argv[2], "end");
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
    if (fd < 0) { perror("open"); return 1; }
    if (fromend) lseek(fd, 0, SEEK_END);
    static char buf[16384];
    long n = 0;
    while (n < max) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EAGAIN) break;
            if (errno == EPIPE) { fprintf(stderr, "EPIPE (overwritten)\n"); continue; }
            perror("read"); return 1;
        }
        if (r == 0) break;
        write(1, buf, r);
        n++;
    }
    return 0;
}
