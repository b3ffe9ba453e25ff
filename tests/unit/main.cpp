#define BOOST_TEST_MODULE sidekey unit tests
#include <boost/test/unit_test.hpp>
