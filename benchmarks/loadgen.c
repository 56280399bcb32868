/* A C-speed load generator for the allocation server: K producer processes, each sending
 * ALLOC/FREE requests with one blocking send() per frame, as TT-Metal's AllocationClient does.
 *
 *   loadgen SOCKET LAYOUT K N [WINDOW [RATE]]
 *
 * LAYOUT is the frame size (72, 112, 128 or 144; the tail of every frame is zero, as a client that
 * memsets its struct sends it). Each of the K children connects, then waits at a start barrier
 * (a pipe the parent closes once all are connected), sends N frames (ALLOCs, and FREEs of the
 * oldest live buffer once WINDOW buffers are live, so the registry stays small; all are freed by
 * the end), then a QUERY, and waits for its reply: when every child has its reply, the server has
 * applied every message. Buffer ids are (pid << 32) | i, so producers never collide. With RATE
 * (messages/s per producer) each producer paces itself: every millisecond it sends the frames
 * that are due, one send() each; without it, it sends as fast as the server takes them.
 *
 * Prints one line: "messages seconds" (from the barrier's release to the last reply).
 * Built by benchmarks/bench_server.py with gcc at run time; not part of the package.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct __attribute__((packed)) head {
    uint8_t type;
    uint8_t pad1[3];
    int32_t device_id;
    uint64_t size;
    uint8_t buffer_type;
    uint8_t pad2[3];
    int32_t process_id;
    uint64_t buffer_id;
    uint64_t timestamp;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int producer(const char *path, int layout, long n, long window, double rate, int barrier, int report) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("loadgen: connect");
        return 1;
    }
    char go;
    if (read(barrier, &go, 1) < 0) return 1; /* returns 0 (EOF) when the parent releases everyone */
    unsigned char frame[1024];
    memset(frame, 0, sizeof frame);
    struct head *h = (struct head *)frame;
    int32_t pid = (int32_t)getpid();
    uint64_t base = (uint64_t)(uint32_t)pid << 32;
    long next_alloc = 0, next_free = 0;
    h->process_id = pid;
    double start = now();
    for (long i = 0; i < n; i++) {
        if (rate > 0 && i % 64 == 0) {
            double due = start + i / rate;
            while (now() < due) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
        }
        long live = next_alloc - next_free;
        if (live >= window || (live > 0 && n - i <= live)) {
            long j = next_free++;
            h->type = 2;
            h->device_id = (int32_t)(j % 4);
            h->size = 0;
            h->buffer_type = 0;
            h->buffer_id = base | (uint64_t)j;
        } else {
            long j = next_alloc++;
            h->type = 1;
            h->device_id = (int32_t)(j % 4);
            h->size = 4096u * (uint64_t)(1 + j % 7);
            h->buffer_type = (uint8_t)(j % 5);
            h->buffer_id = base | (uint64_t)j;
        }
        if (send_all(fd, frame, (size_t)layout) < 0) {
            perror("loadgen: send");
            return 1;
        }
    }
    memset(frame, 0, sizeof frame);
    h->type = 3; /* QUERY device 0: the barrier at the end */
    h->process_id = pid;
    if (send_all(fd, frame, (size_t)layout) < 0) return 1;
    size_t got = 0;
    while (got < (size_t)layout) { /* the original answers in its own layout: read what comes, up to ours */
        ssize_t k = recv(fd, frame + got, (size_t)layout - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
        if (got >= 72 && frame[0] == 4) break;
    }
    double t = now();
    if (write(report, &t, sizeof t) != (ssize_t)sizeof t) return 1;
    close(fd);
    return got >= 72 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen SOCKET LAYOUT K N [WINDOW [RATE]]\n");
        return 2;
    }
    const char *path = argv[1];
    int layout = atoi(argv[2]);
    int k = atoi(argv[3]);
    long n = atol(argv[4]);
    long window = argc > 5 ? atol(argv[5]) : 1024;
    double rate = argc > 6 ? atof(argv[6]) : 0;
    if (layout < 72 || layout > 1024 || k < 1 || n < 1 || window < 1) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 2;
    }
    int barrier[2], report[2];
    if (pipe(barrier) < 0 || pipe(report) < 0) return 1;
    for (int i = 0; i < k; i++) {
        pid_t c = fork();
        if (c == 0) {
            close(barrier[1]);
            close(report[0]);
            _exit(producer(path, layout, n, window, rate, barrier[0], report[1]));
        }
    }
    close(barrier[0]);
    close(report[1]);
    usleep(200000); /* every child connected (and accepted) before the clock starts */
    double t0 = now();
    close(barrier[1]);
    double t1 = t0, t;
    while (read(report[0], &t, sizeof t) == (ssize_t)sizeof t)
        if (t > t1) t1 = t;
    int failed = 0, status;
    while (wait(&status) > 0)
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
    if (failed) {
        fprintf(stderr, "loadgen: %d producer(s) failed\n", failed);
        return 1;
    }
    printf("%ld %.6f\n", (long)k * n, t1 - t0);
    return 0;
}
