#pragma once
// gecko::Error: the one exception type. Messages name the operation, the tensor and the
// expected versus actual value, so a user can tell which input was wrong without a debugger.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace gecko {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws gecko::Error with the streamed parts as message: fail("cema: x has ", n, " dims").
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(detail::concat(std::forward<Parts>(parts)...));
}

template <class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) fail(std::forward<Parts>(parts)...);
}

}  // namespace gecko
