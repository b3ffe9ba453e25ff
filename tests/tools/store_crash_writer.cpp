// Drives the store for the crash-safety test (tests/integration/test_store_crash.py).
//
//   store_crash_writer write DB [START]   puts k<i> = "value-<i>" for i = START, START+1, … forever,
//                                         printing "ack <i>" once each put has returned (is durable)
//   store_crash_writer verify DB          opens the store, prints one name per line, exit 0;
//                                         on a StoreError prints it to stderr and exits 1;
//                                         exits 2 when a k<i> does not hold "value-<i>"
//
// The key comes from SIDEKEY_STORE_KEY. The values are test fixtures, not secrets.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "secrets/store.hpp"

using namespace sidekey::secrets;

namespace {

int usage() {
  std::fprintf(stderr, "usage: store_crash_writer write DB [START] | verify DB\n");
  return 64;
}

SecretValue key_from_env() {
  if (!std::getenv("SIDEKEY_STORE_KEY")) throw StoreError("SIDEKEY_STORE_KEY is not set");
  // The data_dir fallback is never reached: the variable is set.
  return load_store_key({}, {});
}

int write_forever(const std::string& db, unsigned long start) {
  Store store(db, key_from_env());
  for (unsigned long i = start;; ++i) {
    std::string n = std::to_string(i);
    store.put("", "k" + n, SecretValue("value-" + n), {});
    std::printf("ack %lu\n", i);
    std::fflush(stdout);
  }
}

int verify(const std::string& db) {
  Store store(db, key_from_env());
  int status = 0;
  for (const auto& item : *store.snapshot()) {
    const std::string& name = item.meta.name;
    std::printf("%s\n", name.c_str());
    if (name.size() > 1 && name[0] == 'k' && !item.value->equals("value-" + name.substr(1))) {
      std::fprintf(stderr, "unexpected value for %s\n", name.c_str());
      status = 2;
    }
  }
  std::fflush(stdout);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string mode = argv[1], db = argv[2];
  try {
    if (mode == "write") return write_forever(db, argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 0);
    if (mode == "verify") return verify(db);
  } catch (const StoreError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
  return usage();
}
