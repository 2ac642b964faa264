// C API of native/smoke_ffi.c, in the style of a uniffi bridging header.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct SmokeBuffer {
    uint64_t capacity;
    uint64_t len;
    uint8_t *_Nullable data;
} SmokeBuffer;

typedef void (*SmokeCallback)(uint64_t handle, int32_t value);

// Adds two numbers.
int32_t smoke_ffi_add(int32_t a, int32_t b);
// Returns a heap buffer holding "hello, <name>"; free it with smoke_ffi_buffer_free.
SmokeBuffer smoke_ffi_greet(const uint8_t *_Nullable name, int32_t len);
void smoke_ffi_buffer_free(SmokeBuffer buf);
// Calls cb(handle, value * 2) from a new native thread, like a Rust engine answering later.
bool smoke_ffi_call_from_thread(SmokeCallback _Nonnull cb, uint64_t handle, int32_t value);
