// gameverse/sdk/store.hpp — the host's document store and cache, as bytes or as the plugin's own
// protobuf messages. Every call may block: make it from a blocking handler (ServiceBuilder::
// blocking), a timer or subscription that runs blocking, or Host::run_blocking.
#pragma once

#include <gameverse/abi.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gameverse/sdk/detail/abi.hpp"
#include "gameverse/sdk/status.hpp"

namespace gameverse::sdk {

namespace detail {

// Parses stored or cached bytes as M; a record that does not parse (a missing required field,
// bytes of another type) is DATA_LOSS naming where it came from, never a silently empty message.
// ": name, other" — the fields a message lacks, where protobuf can tell (lite messages cannot).
template <ProtoMessage M>
std::string missing_fields(const M& message) {
  const std::string missing = message.InitializationErrorString();
  return missing.empty() || missing.front() == '(' ? "" : ": " + missing;
}

template <ProtoMessage M>
M parse_record(std::string_view bytes, std::string_view where) {
  M message;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !message.ParsePartialFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    throw Error(StatusCode::kDataLoss, std::string(where) + " holds " + std::to_string(bytes.size()) +
                                           " bytes that do not parse as " + message.GetTypeName());
  }
  if (!message.IsInitialized()) {
    throw Error(StatusCode::kDataLoss, std::string(where) + " holds a " + message.GetTypeName() +
                                           " without its required fields" + missing_fields(message));
  }
  return message;
}

template <ProtoMessage M>
std::string serialize(const M& message) {
  if (!message.IsInitialized()) {
    throw Error(StatusCode::kInvalidArgument, "a " + message.GetTypeName() + " without its required fields" +
                                                  missing_fields(message) + " cannot be stored");
  }
  std::string out;
  message.SerializeToString(&out);
  return out;
}

}  // namespace detail

// A stored object read as the plugin's message type M (Store::get<M>, Store::list<M>).
template <class M>
struct Record {
  std::string key;
  M value;
  std::string owner;
  int64_t version = 0;  // pass it as expected_version to write only over this very version
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
};

// The host's document store, for the collections the plugin declared (PluginBuilder::collection).
// Failures throw Error with the host's status and message; thrown from a handler, they become
// the call's status.
class Store {
 public:
  static constexpr int64_t kAnyVersion = GV_STORE_ANY_VERSION;
  static constexpr int64_t kCreateOnly = 0;

  struct Object {
    std::string collection;
    std::string key;
    std::string value;
    std::string owner;
    int64_t version = 0;
    int64_t created_unix_ms = 0;
    int64_t updated_unix_ms = 0;
  };

  struct Page {
    std::vector<Object> objects;
    std::string next_cursor;  // empty on the last page
  };

  template <class M>
  struct RecordPage {
    std::vector<Record<M>> records;
    std::string next_cursor;  // empty on the last page
  };

  struct Query {
    std::string collection;
    std::string key_prefix;
    std::string owner;
    std::string cursor;
    uint32_t limit = 0;  // 0: the host's default page
  };

  // Several writes applied all together or not at all.
  class Batch {
   public:
    // expected_version: kAnyVersion, kCreateOnly or the version the object must have.
    Batch& put(std::string collection, std::string key, std::string value,
               int64_t expected_version = kAnyVersion, std::string owner = {}) {
      writes_.push_back({GV_STORE_PUT, std::move(collection), std::move(key), std::move(value),
                         std::move(owner), expected_version});
      return *this;
    }
    // The same with a message of the plugin's own.
    template <detail::ProtoMessage M>
    Batch& put(std::string collection, std::string key, const M& value,
               int64_t expected_version = kAnyVersion, std::string owner = {}) {
      return put(std::move(collection), std::move(key), detail::serialize(value), expected_version,
                 std::move(owner));
    }
    Batch& erase(std::string collection, std::string key, int64_t expected_version = kAnyVersion) {
      writes_.push_back({GV_STORE_DELETE, std::move(collection), std::move(key), {}, {}, expected_version});
      return *this;
    }
    size_t size() const { return writes_.size(); }
    bool empty() const { return writes_.empty(); }

   private:
    friend class Store;
    struct Write {
      gv_store_write_kind kind;
      std::string collection, key, value, owner;
      int64_t expected_version;
    };
    std::vector<Write> writes_;
  };

  Store(const gv_host_api* api, gv_host_plugin* self) : api_(api), self_(self) {}

  // The object, or nullopt when the key is absent.
  std::optional<Object> get(std::string_view collection, std::string_view key) const {
    std::optional<Object> out;
    detail::MessageBuffer message;
    const gv_status_code code = api_->store_get(self_, detail::bytes(collection), detail::bytes(key),
                                                &collect_one, &out, message.buffer());
    if (code == GV_STATUS_NOT_FOUND) return std::nullopt;
    detail::check(code, message);
    return out;
  }

  // The object as the plugin's message M, or nullopt when the key is absent. DATA_LOSS when the
  // stored bytes are not an M.
  template <detail::ProtoMessage M>
  std::optional<Record<M>> get(std::string_view collection, std::string_view key) const {
    std::optional<Object> object = get(collection, key);
    if (!object) return std::nullopt;
    return record_of<M>(std::move(*object));
  }

  // Returns the new version.
  int64_t put(std::string collection, std::string key, std::string value,
              int64_t expected_version = kAnyVersion, std::string owner = {}) const {
    Batch batch;
    batch.put(std::move(collection), std::move(key), std::move(value), expected_version, std::move(owner));
    return commit(batch).at(0);
  }

  template <detail::ProtoMessage M>
  int64_t put(std::string collection, std::string key, const M& value, int64_t expected_version = kAnyVersion,
              std::string owner = {}) const {
    return put(std::move(collection), std::move(key), detail::serialize(value), expected_version,
               std::move(owner));
  }

  void erase(std::string collection, std::string key, int64_t expected_version = kAnyVersion) const {
    Batch batch;
    batch.erase(std::move(collection), std::move(key), expected_version);
    commit(batch);
  }

  // Returns each write's new version (0 for deletes).
  std::vector<int64_t> commit(const Batch& batch) const {
    std::vector<gv_store_write> writes;
    writes.reserve(batch.writes_.size());
    for (const auto& w : batch.writes_) {
      writes.push_back({sizeof(gv_store_write), w.kind, detail::bytes(w.collection), detail::bytes(w.key),
                        detail::bytes(w.value), detail::bytes(w.owner), w.expected_version});
    }
    std::vector<int64_t> versions(writes.size());
    detail::MessageBuffer message;
    detail::check(api_->store_write(self_, writes.data(), writes.size(), versions.data(), message.buffer()),
                  message);
    return versions;
  }

  Page list(const Query& query) const {
    Page page;
    detail::StringSink cursor(page.next_cursor);
    const gv_store_query q{sizeof(gv_store_query),          detail::bytes(query.collection),
                           detail::bytes(query.key_prefix), detail::bytes(query.owner),
                           detail::bytes(query.cursor),     query.limit};
    detail::MessageBuffer message;
    detail::check(api_->store_list(self_, &q, &collect_many, &page.objects, &cursor, message.buffer()),
                  message);
    return page;
  }

  template <detail::ProtoMessage M>
  RecordPage<M> list(const Query& query) const {
    Page page = list(query);
    RecordPage<M> out;
    out.records.reserve(page.objects.size());
    for (Object& object : page.objects) out.records.push_back(record_of<M>(std::move(object)));
    out.next_cursor = std::move(page.next_cursor);
    return out;
  }

 private:
  template <class M>
  static Record<M> record_of(Object object) {
    const std::string where = "collection '" + object.collection + "' key '" + object.key + "'";
    return {std::move(object.key),   detail::parse_record<M>(object.value, where),
            std::move(object.owner), object.version,
            object.created_unix_ms,  object.updated_unix_ms};
  }
  static std::string text(gv_bytes b) { return std::string(detail::view(b)); }
  static Object object_of(const gv_store_object* o) {
    return {text(o->collection), text(o->key),       text(o->value),    text(o->owner),
            o->version,          o->created_unix_ms, o->updated_unix_ms};
  }
  static void collect_one(void* context, const gv_store_object* o) {
    *static_cast<std::optional<Object>*>(context) = object_of(o);
  }
  static void collect_many(void* context, const gv_store_object* o) {
    static_cast<std::vector<Object>*>(context)->push_back(object_of(o));
  }

  const gv_host_api* api_;
  gv_host_plugin* self_;
};

// The host's cache (Host::cache): values with a time to live and atomic counters, in the
// plugin's own key space. Failures throw Error with the host's status and message.
class Cache {
 public:
  Cache(const gv_host_api* api, gv_host_plugin* self) : api_(api), self_(self) {}

  // The value, or nullopt when the key is absent or has expired.
  std::optional<std::string> get(std::string_view key) const {
    std::string value;
    detail::StringSink sink(value);
    detail::MessageBuffer message;
    const gv_status_code code = api_->cache_get(self_, detail::bytes(key), &sink, message.buffer());
    if (code == GV_STATUS_NOT_FOUND) return std::nullopt;
    detail::check(code, message);
    return value;
  }

  // The value as the plugin's message M; DATA_LOSS when the cached bytes are not an M.
  template <detail::ProtoMessage M>
  std::optional<M> get(std::string_view key) const {
    std::optional<std::string> value = get(key);
    if (!value) return std::nullopt;
    return detail::parse_record<M>(*value, "cache key '" + std::string(key) + "'");
  }

  // ttl zero: the value does not expire.
  void set(std::string_view key, std::string_view value,
           std::chrono::milliseconds ttl = std::chrono::milliseconds(0)) const {
    detail::MessageBuffer message;
    detail::check(api_->cache_set(self_, detail::bytes(key), detail::bytes(value),
                                  static_cast<uint64_t>(ttl.count()), message.buffer()),
                  message);
  }

  template <detail::ProtoMessage M>
  void set(std::string_view key, const M& value,
           std::chrono::milliseconds ttl = std::chrono::milliseconds(0)) const {
    set(key, std::string_view(detail::serialize(value)), ttl);
  }

  void erase(std::string_view key) const {
    detail::MessageBuffer message;
    detail::check(api_->cache_delete(self_, detail::bytes(key), message.buffer()), message);
  }

  // Sets key to `desired` (nullopt: removes the key), expiring after ttl (zero: never), only when
  // its current value is `expected` (nullopt: absent or expired); returns whether it did. Atomic on
  // every backend, so it makes leases across hosts: acquire compare_and_set(k, nullopt, me, ttl),
  // renew compare_and_set(k, me, me, ttl), release compare_and_set(k, me, nullopt). Needs ABI 1.4.
  bool compare_and_set(std::string_view key, std::optional<std::string_view> expected,
                       std::optional<std::string_view> desired,
                       std::chrono::milliseconds ttl = std::chrono::milliseconds(0)) const {
    detail::require_minor(api_, 4, "compare_and_set in the cache");
    bool swapped = false;
    detail::MessageBuffer message;
    detail::check(api_->cache_compare_and_set(self_, detail::bytes(key), expected.has_value(),
                                              detail::bytes(expected.value_or("")), desired.has_value(),
                                              detail::bytes(desired.value_or("")),
                                              static_cast<uint64_t>(ttl.count()), &swapped, message.buffer()),
                  message);
    return swapped;
  }

  // Adds delta and returns the new value. A key this call creates expires after ttl (zero: never):
  // a counter within a window, e.g. failed logins per minute.
  int64_t increment(std::string_view key, int64_t delta = 1,
                    std::chrono::milliseconds ttl = std::chrono::milliseconds(0)) const {
    int64_t value = 0;
    detail::MessageBuffer message;
    detail::check(api_->cache_increment(self_, detail::bytes(key), delta, static_cast<uint64_t>(ttl.count()),
                                        &value, message.buffer()),
                  message);
    return value;
  }

 private:
  const gv_host_api* api_;
  gv_host_plugin* self_;
};

}  // namespace gameverse::sdk
