#include "proxy/framing.hpp"

#include <bit>

#include <emmintrin.h>

namespace sidekey::proxy {

std::size_t find_head_end(std::string_view d, std::size_t from) {
  const char* const p = d.data();
  const std::size_t n = d.size();
  // Just past the blank line when the LF at i ends one ("\n\n" or "\n\r\n"), else 0.
  auto blank_after = [&](std::size_t i) -> std::size_t {
    if (i + 1 < n && p[i + 1] == '\n') return i + 2;
    if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 3;
    return 0;
  };
  std::size_t i = from >= 3 ? from - 3 : 0;
  // The LFs of 16 bytes at a time (a head has one every 20 to 40 bytes), each looked behind.
  const __m128i lf = _mm_set1_epi8('\n');
  for (; i + 16 <= n; i += 16) {
    auto mask = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)), lf)));
    for (; mask != 0; mask &= mask - 1)
      if (const std::size_t end = blank_after(i + static_cast<std::size_t>(std::countr_zero(mask)))) return end;
  }
  for (; i < n; ++i)
    if (p[i] == '\n')
      if (const std::size_t end = blank_after(i)) return end;
  return std::string_view::npos;
}

}  // namespace sidekey::proxy
