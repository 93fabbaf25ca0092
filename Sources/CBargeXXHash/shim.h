#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
// libxxhash's runtime-dispatched XXH3 (SSE2, AVX2 or AVX-512, chosen by cpuid on first use).
// The plain entry points are built for the x86-64 baseline (SSE2) and run at half the speed.
#include <xxh_x86dispatch.h>

__attribute__((target("avx"))) static inline void barge_vzeroupper_avx(void) { __builtin_ia32_vzeroupper(); }

/// Clears the upper halves of the vector registers after a wide XXH3 pass, where the CPU has AVX.
/// Without it, SSE-encoded code that runs next (OpenSSL's SHA-256) was measured 25% slower.
static inline void barge_vzeroupper(void) {
    static int has_avx = -1;
    if (has_avx < 0) has_avx = __builtin_cpu_supports("avx") ? 1 : 0;
    if (has_avx) barge_vzeroupper_avx();
}
#endif
