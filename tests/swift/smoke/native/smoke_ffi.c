// The native library for the Swift smoke test; run.sh builds it on the host with cc into
// target/toolchains/swift-smoke/lib/libsmoke_ffi.so (as cargo builds the real cdylib on the host).
// Like a Rust cdylib it does not include the Swift-facing header (which uses clang's _Nullable).
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct SmokeBuffer { uint64_t capacity; uint64_t len; uint8_t *data; } SmokeBuffer;
typedef void (*SmokeCallback)(uint64_t handle, int32_t value);

int32_t smoke_ffi_add(int32_t a, int32_t b) { return a + b; }

SmokeBuffer smoke_ffi_greet(const uint8_t *name, int32_t len) {
    static const char prefix[] = "hello, ";
    size_t n = sizeof prefix - 1 + (size_t)(len > 0 ? len : 0);
    SmokeBuffer buf = { n, n, malloc(n ? n : 1) };
    memcpy(buf.data, prefix, sizeof prefix - 1);
    if (len > 0) memcpy(buf.data + sizeof prefix - 1, name, (size_t)len);
    return buf;
}

void smoke_ffi_buffer_free(SmokeBuffer buf) { free(buf.data); }

struct job { SmokeCallback cb; uint64_t handle; int32_t value; };

static void *run_job(void *arg) {
    struct job *j = arg;
    j->cb(j->handle, j->value * 2);
    free(j);
    return NULL;
}

bool smoke_ffi_call_from_thread(SmokeCallback cb, uint64_t handle, int32_t value) {
    struct job *j = malloc(sizeof *j);
    if (!j) return false;
    *j = (struct job){ cb, handle, value };
    pthread_t t;
    if (pthread_create(&t, NULL, run_job, j) != 0) { free(j); return false; }
    return pthread_detach(t) == 0;
}
