// The one translation unit that provides main() for every CAF test binary.
#include <caf/test/unit_test_impl.hpp>
