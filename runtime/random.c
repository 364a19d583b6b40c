/*
 * ordo - random bytes (random.h).
 */
#include "random.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "clock.h"

void ordo_random_bytes(void *buf, size_t n) {
        unsigned char *out = buf;
        ssize_t got = -1;
        int fd = open("/dev/urandom", O_RDONLY);
        size_t i;
        if (fd >= 0) {
                got = read(fd, buf, n);
                close(fd);
        }
        if (got == (ssize_t)n)
                return;
        {
                uint64_t mix[3] = { (uint64_t)ordo_wall_ms(),
                                    (uint64_t)ordo_monotonic_ms(),
                                    (uint64_t)getpid() };
                for (i = 0; i < n; i++)
                        out[i] = ((const unsigned char *)mix)[i % sizeof(mix)];
        }
}
