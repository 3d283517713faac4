// CRC-32C with the processor's instruction: eight bytes per step, then the rest one at a time. The Swift side
// (CRC32C) checks tandem_crc32c_hardware() once and falls back to its sliced tables where it answers 0.

#include "ccrc32c.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int tandem_crc32c_hardware(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) uint32_t tandem_crc32c_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint64_t state = (uint32_t)~crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        state = _mm_crc32_u64(state, word);
        p += 8;
        count -= 8;
    }
    uint32_t small = (uint32_t)state;
    while (count > 0) {
        small = _mm_crc32_u8(small, *p);
        p += 1;
        count -= 1;
    }
    return ~small;
}

#elif defined(__aarch64__) && defined(__linux__)
#include <arm_acle.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>

int tandem_crc32c_hardware(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }

__attribute__((target("+crc"))) uint32_t tandem_crc32c_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint32_t state = ~crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        state = __crc32cd(state, word);
        p += 8;
        count -= 8;
    }
    while (count > 0) {
        state = __crc32cb(state, *p);
        p += 1;
        count -= 1;
    }
    return ~state;
}

#else

int tandem_crc32c_hardware(void) { return 0; }

uint32_t tandem_crc32c_update(uint32_t crc, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return crc;
}

#endif
