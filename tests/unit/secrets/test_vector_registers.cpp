// clear_vector_registers(): the registers a copy of plaintext passes through read zero after it.
// Each case loads a pattern into the registers, calls it, and stores the registers back; without
// the clearing the pattern comes back.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <cstdint>

#include "secrets/secret_value.hpp"

using namespace sidekey::secrets;

BOOST_AUTO_TEST_SUITE(vector_registers)

#if defined(__x86_64__)

namespace {
bool all_zero(const unsigned char* p, std::size_t n) {
  return std::all_of(p, p + n, [](unsigned char c) { return c == 0; });
}
}  // namespace

// zmm16-31: glibc's AVX-512 memcpy moves 64 bytes at a time through them, and no code the
// compiler generates here touches them (the build does not target AVX-512).
BOOST_AUTO_TEST_CASE(upper_sixteen_avx512_registers) {
  if (!__builtin_cpu_supports("avx512f")) {
    BOOST_TEST_MESSAGE("no AVX-512 on this CPU: nothing to check");
    return;
  }
  alignas(64) std::array<unsigned char, 64> pattern;
  pattern.fill(0xA5);
  alignas(64) std::array<unsigned char, 64 * 16> out;
  out.fill(0x11);
  __asm__ __volatile__(
      "vmovdqu64 (%0), %%zmm16\n\tvmovdqa64 %%zmm16, %%zmm17\n\tvmovdqa64 %%zmm16, %%zmm18\n\t"
      "vmovdqa64 %%zmm16, %%zmm19\n\tvmovdqa64 %%zmm16, %%zmm20\n\tvmovdqa64 %%zmm16, %%zmm21\n\t"
      "vmovdqa64 %%zmm16, %%zmm22\n\tvmovdqa64 %%zmm16, %%zmm23\n\tvmovdqa64 %%zmm16, %%zmm24\n\t"
      "vmovdqa64 %%zmm16, %%zmm25\n\tvmovdqa64 %%zmm16, %%zmm26\n\tvmovdqa64 %%zmm16, %%zmm27\n\t"
      "vmovdqa64 %%zmm16, %%zmm28\n\tvmovdqa64 %%zmm16, %%zmm29\n\tvmovdqa64 %%zmm16, %%zmm30\n\t"
      "vmovdqa64 %%zmm16, %%zmm31"
      :
      : "r"(pattern.data())
      : "memory");
  clear_vector_registers();
  __asm__ __volatile__(
      "vmovdqu64 %%zmm16, 0(%0)\n\tvmovdqu64 %%zmm17, 64(%0)\n\tvmovdqu64 %%zmm18, 128(%0)\n\t"
      "vmovdqu64 %%zmm19, 192(%0)\n\tvmovdqu64 %%zmm20, 256(%0)\n\tvmovdqu64 %%zmm21, 320(%0)\n\t"
      "vmovdqu64 %%zmm22, 384(%0)\n\tvmovdqu64 %%zmm23, 448(%0)\n\tvmovdqu64 %%zmm24, 512(%0)\n\t"
      "vmovdqu64 %%zmm25, 576(%0)\n\tvmovdqu64 %%zmm26, 640(%0)\n\tvmovdqu64 %%zmm27, 704(%0)\n\t"
      "vmovdqu64 %%zmm28, 768(%0)\n\tvmovdqu64 %%zmm29, 832(%0)\n\tvmovdqu64 %%zmm30, 896(%0)\n\t"
      "vmovdqu64 %%zmm31, 960(%0)"
      :
      : "r"(out.data())
      : "memory");
  BOOST_TEST(all_zero(out.data(), out.size()));
}

// zmm12-15 whole, bits 256-511 included (VZEROALL's reach on AVX-512 hardware).
BOOST_AUTO_TEST_CASE(lower_avx512_registers_whole) {
  if (!__builtin_cpu_supports("avx512f")) {
    BOOST_TEST_MESSAGE("no AVX-512 on this CPU: nothing to check");
    return;
  }
  alignas(64) std::array<unsigned char, 64> pattern;
  pattern.fill(0xC3);
  alignas(64) std::array<unsigned char, 64 * 4> out;
  out.fill(0x11);
  __asm__ __volatile__(
      "vmovdqu64 (%0), %%zmm12\n\tvmovdqa64 %%zmm12, %%zmm13\n\tvmovdqa64 %%zmm12, %%zmm14\n\t"
      "vmovdqa64 %%zmm12, %%zmm15"
      :
      : "r"(pattern.data())
      : "xmm12", "xmm13", "xmm14", "xmm15", "memory");
  clear_vector_registers();
  __asm__ __volatile__(
      "vmovdqu64 %%zmm12, 0(%0)\n\tvmovdqu64 %%zmm13, 64(%0)\n\tvmovdqu64 %%zmm14, 128(%0)\n\t"
      "vmovdqu64 %%zmm15, 192(%0)\n\tvzeroupper"
      :
      : "r"(out.data())
      : "memory");
  BOOST_TEST(all_zero(out.data(), out.size()));
}

// The upper halves of ymm0-15 (the compiler's own SSE code uses only their lower halves).
BOOST_AUTO_TEST_CASE(upper_halves_of_the_avx_registers) {
  if (!__builtin_cpu_supports("avx")) {
    BOOST_TEST_MESSAGE("no AVX on this CPU: nothing to check");
    return;
  }
  alignas(32) std::array<unsigned char, 32> pattern;
  pattern.fill(0x5A);
  alignas(32) std::array<unsigned char, 32 * 4> out;
  out.fill(0x11);
  __asm__ __volatile__(
      "vmovdqu (%0), %%ymm12\n\tvmovdqa %%ymm12, %%ymm13\n\tvmovdqa %%ymm12, %%ymm14\n\tvmovdqa %%ymm12, %%ymm15"
      :
      : "r"(pattern.data())
      : "xmm12", "xmm13", "xmm14", "xmm15", "memory");
  clear_vector_registers();
  __asm__ __volatile__(
      "vmovdqu %%ymm12, 0(%0)\n\tvmovdqu %%ymm13, 32(%0)\n\tvmovdqu %%ymm14, 64(%0)\n\tvmovdqu %%ymm15, 96(%0)\n\t"
      "vzeroupper"
      :
      : "r"(out.data())
      : "memory");
  BOOST_TEST(all_zero(out.data(), out.size()));
}

BOOST_AUTO_TEST_CASE(the_guard_clears_when_its_scope_ends) {
  if (!__builtin_cpu_supports("avx")) return;
  alignas(32) std::array<unsigned char, 32> pattern;
  pattern.fill(0x3C);
  alignas(32) std::array<unsigned char, 32> out;
  out.fill(0x11);
  {
    ClearRegistersOnExit guard;
    __asm__ __volatile__("vmovdqu (%0), %%ymm15" : : "r"(pattern.data()) : "xmm15", "memory");
  }
  __asm__ __volatile__("vmovdqu %%ymm15, (%0)\n\tvzeroupper" : : "r"(out.data()) : "memory");
  BOOST_TEST(all_zero(out.data(), out.size()));
}

#else
BOOST_AUTO_TEST_CASE(not_x86_64) { BOOST_TEST_MESSAGE("clear_vector_registers is a no-op off x86-64"); }
#endif

BOOST_AUTO_TEST_SUITE_END()
