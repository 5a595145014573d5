// Command-line integers for the tools in bench/: the whole text, in range, or an error (never atoi's
// silent 0 for "abc", nor a wrapped value for "4294967297").
#pragma once

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace signalgemm::bench {

inline bool parse_int(const char* text, long min_value, long max_value, long& out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (*end != '\0' || errno == ERANGE || v < min_value || v > max_value) return false;
  out = v;
  return true;
}

inline bool parse_int(const char* text, long min_value, int& out) {
  long v = 0;
  if (!parse_int(text, min_value, INT_MAX, v)) return false;
  out = int(v);
  return true;
}

}  // namespace signalgemm::bench
