#ifndef TANDEM_CCRC32C_H
#define TANDEM_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Whether this processor computes CRC-32C in hardware (SSE 4.2 on x86-64, the CRC32 extension on AArch64).
int tandem_crc32c_hardware(void);

/// The CRC-32C of `count` bytes at `bytes`, continuing `crc` (0 to start), computed with the processor's CRC-32C
/// instruction. Call only where `tandem_crc32c_hardware()` answered non-zero.
uint32_t tandem_crc32c_update(uint32_t crc, const void *bytes, size_t count);

#endif
