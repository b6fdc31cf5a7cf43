// The store's list cursor, which a plugin hands back from its caller: any bytes are refused with
// INVALID_ARGUMENT unless they are a cursor this host issued for the same query. Input: a mode
// byte, a limit byte, the lengths of a key prefix and an owner, those two, then cursor material.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "platform/store.hpp"
#include "platform/store_service.hpp"

namespace {

namespace platform = gameverse::platform;

const std::string kSpace = "fuzz";
const std::vector<std::string> kCollections = {"items"};

struct Fixture {
  Fixture() {
    directory = std::filesystem::temp_directory_path() / ("gv-fuzz-store-" + std::to_string(::getpid()));
    std::filesystem::remove_all(directory);
    std::filesystem::create_directories(directory);
    store = std::make_unique<platform::Store>(platform::open_sqlite_store((directory / "store.db").string()),
                                              platform::StoreLimits{});
    std::vector<platform::StoreWrite> writes;
    for (const char* key : {"a", "a\x01", "ab", "b", "b/c", "\xff", "\xff\xff"}) {
      writes.push_back(
          {platform::StoreWrite::Kind::kPut, "items", key, "value", key[0] == 'a' ? "alice" : "bob"});
    }
    writes.push_back({platform::StoreWrite::Kind::kPut, "items", std::string("a\0z", 3), "v", "alice"});
    store->write(kSpace, kCollections, writes);
    platform::StoreQuery first;
    first.collection = "items";
    first.limit = 2;
    genuine = store->list(kSpace, kCollections, first, "").next_cursor;
    if (genuine.empty()) std::abort();
  }
  ~Fixture() { std::filesystem::remove_all(directory); }
  std::filesystem::path directory;
  std::unique_ptr<platform::Store> store;
  std::string genuine;  // the first page's cursor for collection "items", any prefix and owner
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture fixture;
  if (size < 4) return 0;
  const uint8_t mode = data[0] % 3;
  platform::StoreQuery query;
  query.collection = "items";
  query.limit = data[1] % 8;
  size_t at = 4;
  const size_t prefix_size = std::min<size_t>(data[2] % 4, size - at);
  query.key_prefix.assign(reinterpret_cast<const char*>(data) + at, prefix_size);
  at += prefix_size;
  const size_t owner_size = std::min<size_t>(data[3] % 8, size - at);
  query.owner.assign(reinterpret_cast<const char*>(data) + at, owner_size);
  at += owner_size;
  const std::string_view rest(reinterpret_cast<const char*>(data) + at, size - at);

  std::string cursor;
  switch (mode) {
    case 0: cursor = rest; break;                                 // made up
    case 1: cursor = std::string(rest) + fixture.genuine; break;  // another key before a real MAC
    case 2:                                                       // a real cursor with bits flipped
      cursor = fixture.genuine;
      for (size_t i = 0; i < rest.size(); ++i) cursor[i % cursor.size()] ^= rest[i];
      break;
  }
  try {
    const auto result = fixture.store->list(kSpace, kCollections, query, cursor);
    // Accepted: it must be the cursor issued for this query, or none.
    const bool same_query = query.key_prefix.empty() && query.owner.empty();
    if (!cursor.empty() && !(cursor == fixture.genuine && same_query)) std::abort();
    if (result.page.objects.size() > (query.limit == 0 ? 100u : query.limit)) std::abort();
  } catch (const platform::PlatformError& e) {
    if (e.code() != GV_STATUS_INVALID_ARGUMENT) std::abort();
  }
  return 0;
}
