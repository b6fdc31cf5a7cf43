// gameverse/sdk/plugin.hpp — the header-only C++ SDK over gameverse/abi.h.
//
// A plugin is a class with a constructor taking InitContext& and a static
// describe(PluginBuilder<Self>&) that registers its methods and config keys, one line each:
//
//   class Echo final : public gameverse::sdk::Plugin {
//    public:
//     explicit Echo(gameverse::sdk::InitContext& init);
//     static void describe(gameverse::sdk::PluginBuilder<Echo>& b) {
//       b.unary("/gameverse.echo.v1.Echo/Echo", &Echo::echo);
//     }
//     gameverse::sdk::Status echo(gameverse::sdk::CallContext&, const EchoRequest&, EchoReply&);
//   };
//   GAMEVERSE_PLUGIN(Echo, "echo", "1.0.0", "Echoes what it is sent")
//
// Messages are protobuf-lite types. No exception leaves a trampoline: sdk::Error becomes its
// status, anything else becomes INTERNAL with the exception's message.
#pragma once

#include <gameverse/abi.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gameverse::sdk {

enum class StatusCode : int32_t {
  kOk = GV_STATUS_OK,
  kCancelled = GV_STATUS_CANCELLED,
  kUnknown = GV_STATUS_UNKNOWN,
  kInvalidArgument = GV_STATUS_INVALID_ARGUMENT,
  kDeadlineExceeded = GV_STATUS_DEADLINE_EXCEEDED,
  kNotFound = GV_STATUS_NOT_FOUND,
  kAlreadyExists = GV_STATUS_ALREADY_EXISTS,
  kPermissionDenied = GV_STATUS_PERMISSION_DENIED,
  kResourceExhausted = GV_STATUS_RESOURCE_EXHAUSTED,
  kFailedPrecondition = GV_STATUS_FAILED_PRECONDITION,
  kAborted = GV_STATUS_ABORTED,
  kOutOfRange = GV_STATUS_OUT_OF_RANGE,
  kUnimplemented = GV_STATUS_UNIMPLEMENTED,
  kInternal = GV_STATUS_INTERNAL,
  kUnavailable = GV_STATUS_UNAVAILABLE,
  kDataLoss = GV_STATUS_DATA_LOSS,
  kUnauthenticated = GV_STATUS_UNAUTHENTICATED,
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Thrown from a handler or constructor to end the call (or refuse the load) with this status.
class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  StatusCode code() const { return code_; }

 private:
  StatusCode code_;
};

enum class LogLevel : int32_t {
  kTrace = GV_LOG_TRACE,
  kDebug = GV_LOG_DEBUG,
  kInfo = GV_LOG_INFO,
  kWarn = GV_LOG_WARN,
  kError = GV_LOG_ERROR,
};

namespace detail {

// The host's function table, set once by gv_on_init. Each plugin library has its own copy.
inline const gv_host_api*& host_api() {
  static const gv_host_api* api = nullptr;
  return api;
}

// Serializes `message` and hands the bytes to `use`: small messages on the stack, large ones on
// the heap. Never into a thread_local std::string: glibc keeps a library loaded for as long as a
// thread that ran a destructor-bearing thread_local of it lives, and the host's threads outlive
// every generation of a plugin.
template <class Message, class Use>
auto with_serialized(const Message& message, Use&& use) {
  constexpr size_t kStackBytes = 4096;
  const size_t size = message.ByteSizeLong();
  if (size <= kStackBytes) {
    uint8_t bytes[kStackBytes];
    message.SerializeWithCachedSizesToArray(bytes);
    return use(bytes, size);
  }
  std::string bytes;
  message.SerializeToString(&bytes);
  return use(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

inline void write_message(gv_message_buffer buffer, std::string_view message) {
  if (buffer.data == nullptr || buffer.capacity == 0) return;
  const size_t n = std::min(message.size(), buffer.capacity - 1);
  std::memcpy(buffer.data, message.data(), n);
  buffer.data[n] = '\0';
}

inline Status status_of_current_exception() {
  try {
    throw;
  } catch (const Error& e) {
    return {e.code(), e.what()};
  } catch (const std::exception& e) {
    return {StatusCode::kInternal, e.what()};
  } catch (...) {
    return {StatusCode::kInternal, "unknown exception"};
  }
}

inline std::string_view view(gv_bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data), bytes.size};
}

}  // namespace detail

struct Principal {
  std::string user_id;
  std::string session_id;
  std::vector<std::string> roles;
  bool anonymous() const { return user_id.empty(); }
};

// Read access to one call, valid while the handler that received it runs.
class CallContext {
 public:
  explicit CallContext(gv_call* call) : call_(call) {}

  std::chrono::system_clock::time_point deadline() const {
    return to_time_point(detail::host_api()->call_deadline(call_));
  }
  bool cancelled() const { return detail::host_api()->call_is_cancelled(call_); }
  std::string_view method() const { return detail::view(detail::host_api()->call_method(call_)); }
  // The client's address, "ipv4:127.0.0.1:53211".
  std::string_view peer() const { return detail::view(detail::host_api()->call_peer(call_)); }

  // Every value of request metadata `key` (lower case).
  std::vector<std::string_view> metadata(const char* key) const {
    gv_bytes values[8];
    size_t count = detail::host_api()->call_metadata(call_, key, values, 8);
    std::vector<gv_bytes> all(values, values + std::min<size_t>(count, 8));
    if (count > 8) {
      all.resize(count);
      detail::host_api()->call_metadata(call_, key, all.data(), count);
    }
    std::vector<std::string_view> out;
    out.reserve(all.size());
    for (const gv_bytes& b : all) out.push_back(detail::view(b));
    return out;
  }

  Principal principal() const {
    gv_principal p{};
    p.struct_size = sizeof p;
    detail::host_api()->call_principal(call_, &p);
    Principal out{std::string(detail::view(p.user_id)), std::string(detail::view(p.session_id)), {}};
    for (size_t i = 0; i < p.role_count; ++i) out.roles.emplace_back(detail::view(p.roles[i]));
    return out;
  }

  gv_call* handle() const { return call_; }

  static std::chrono::system_clock::time_point to_time_point(int64_t unix_ms) {
    if (unix_ms == std::numeric_limits<int64_t>::max()) {
      return std::chrono::system_clock::time_point::max();
    }
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms));
  }

 private:
  gv_call* call_;
};

// The host's document store, for the collections the plugin declared (PluginBuilder::collection).
// Failures throw Error with the host's status and message; thrown from a handler, they become
// the call's status.
class Store {
 public:
  static constexpr int64_t kAnyVersion = GV_STORE_ANY_VERSION;

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
    // expected_version: kAnyVersion, 0 (create only) or the version the object must have.
    Batch& put(std::string collection, std::string key, std::string value,
               int64_t expected_version = kAnyVersion, std::string owner = {}) {
      writes_.push_back({GV_STORE_PUT, std::move(collection), std::move(key), std::move(value),
                         std::move(owner), expected_version});
      return *this;
    }
    Batch& erase(std::string collection, std::string key, int64_t expected_version = kAnyVersion) {
      writes_.push_back({GV_STORE_DELETE, std::move(collection), std::move(key), {}, {}, expected_version});
      return *this;
    }
    size_t size() const { return writes_.size(); }

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
    char message[512] = {};
    const gv_status_code code =
        api_->store_get(self_, bytes(collection), bytes(key), &collect_one, &out, {message, sizeof message});
    if (code == GV_STATUS_NOT_FOUND) return std::nullopt;
    check(code, message);
    return out;
  }

  // Returns the new version.
  int64_t put(std::string collection, std::string key, std::string value,
              int64_t expected_version = kAnyVersion, std::string owner = {}) const {
    Batch batch;
    batch.put(std::move(collection), std::move(key), std::move(value), expected_version, std::move(owner));
    return commit(batch).at(0);
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
      writes.push_back({sizeof(gv_store_write), w.kind, bytes(w.collection), bytes(w.key), bytes(w.value),
                        bytes(w.owner), w.expected_version});
    }
    std::vector<int64_t> versions(writes.size());
    char message[512] = {};
    check(api_->store_write(self_, writes.data(), writes.size(), versions.data(), {message, sizeof message}),
          message);
    return versions;
  }

  Page list(const Query& query) const {
    Page page;
    struct Cursor : gv_state_sink {
      std::string* out;
    } cursor;
    cursor.struct_size = sizeof(gv_state_sink);
    cursor.out = &page.next_cursor;
    cursor.append = [](gv_state_sink* sink, const uint8_t* data, size_t size) {
      static_cast<Cursor*>(sink)->out->append(reinterpret_cast<const char*>(data), size);
    };
    const gv_store_query q{sizeof(gv_store_query), bytes(query.collection), bytes(query.key_prefix),
                           bytes(query.owner),     bytes(query.cursor),     query.limit};
    char message[512] = {};
    check(api_->store_list(self_, &q, &collect_many, &page.objects, &cursor, {message, sizeof message}),
          message);
    return page;
  }

 private:
  static gv_bytes bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
  static std::string text(gv_bytes b) { return {reinterpret_cast<const char*>(b.data), b.size}; }
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
  static void check(gv_status_code code, const char* message) {
    if (code != GV_STATUS_OK) throw Error(static_cast<StatusCode>(code), message);
  }

  const gv_host_api* api_;
  gv_host_plugin* self_;
};

// A timer on a host thread (Host::start_timer). Cancelled when the handle is dropped, and by the
// host when the generation retires.
class Timer {
 public:
  Timer() = default;
  Timer(const gv_host_api* api, gv_host_plugin* self, uint64_t id,
        std::unique_ptr<std::function<void()>> callback)
      : api_(api), self_(self), id_(id), callback_(std::move(callback)) {}
  Timer(Timer&& other) noexcept { *this = std::move(other); }
  Timer& operator=(Timer&& other) noexcept {
    if (this != &other) {
      cancel();
      api_ = other.api_;
      self_ = other.self_;
      id_ = std::exchange(other.id_, 0);
      callback_ = std::move(other.callback_);
    }
    return *this;
  }
  ~Timer() { cancel(); }
  // When it returns, the callback is not running and will not run again.
  void cancel() {
    if (id_ != 0) api_->timer_cancel(self_, std::exchange(id_, 0));
  }
  bool active() const { return id_ != 0; }

 private:
  const gv_host_api* api_ = nullptr;
  gv_host_plugin* self_ = nullptr;
  uint64_t id_ = 0;
  std::unique_ptr<std::function<void()>> callback_;
};

// The host's cache (Host::cache): values with a time to live and atomic counters, in the
// plugin's own key space. Failures throw Error with the host's status and message.
class Cache {
 public:
  Cache(const gv_host_api* api, gv_host_plugin* self) : api_(api), self_(self) {}

  // The value, or nullopt when the key is absent or has expired.
  std::optional<std::string> get(std::string_view key) const {
    std::string value;
    struct Sink : gv_state_sink {
      std::string* out;
    } sink;
    sink.struct_size = sizeof(gv_state_sink);
    sink.out = &value;
    sink.append = [](gv_state_sink* s, const uint8_t* data, size_t size) {
      static_cast<Sink*>(s)->out->append(reinterpret_cast<const char*>(data), size);
    };
    char message[512] = {};
    const gv_status_code code = api_->cache_get(self_, bytes(key), &sink, {message, sizeof message});
    if (code == GV_STATUS_NOT_FOUND) return std::nullopt;
    check(code, message);
    return value;
  }

  // ttl zero: the value does not expire.
  void set(std::string_view key, std::string_view value,
           std::chrono::milliseconds ttl = std::chrono::milliseconds(0)) const {
    char message[512] = {};
    check(api_->cache_set(self_, bytes(key), bytes(value), static_cast<uint64_t>(ttl.count()),
                          {message, sizeof message}),
          message);
  }

  void erase(std::string_view key) const {
    char message[512] = {};
    check(api_->cache_delete(self_, bytes(key), {message, sizeof message}), message);
  }

  // Adds delta and returns the new value. A key this call creates expires after ttl (zero: never):
  // a counter within a window, e.g. failed logins per minute.
  int64_t increment(std::string_view key, int64_t delta = 1,
                    std::chrono::milliseconds ttl = std::chrono::milliseconds(0)) const {
    int64_t value = 0;
    char message[512] = {};
    check(api_->cache_increment(self_, bytes(key), delta, static_cast<uint64_t>(ttl.count()), &value,
                                {message, sizeof message}),
          message);
    return value;
  }

 private:
  static gv_bytes bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
  static void check(gv_status_code code, const char* message) {
    if (code != GV_STATUS_OK) throw Error(static_cast<StatusCode>(code), message);
  }
  const gv_host_api* api_;
  gv_host_plugin* self_;
};

// A subscription to a pub/sub topic (Host::subscribe). Ended when the handle is dropped, and by
// the host when the generation retires.
class Subscription {
 public:
  using Handler = std::function<void(std::string_view topic, std::string_view payload)>;
  Subscription() = default;
  Subscription(const gv_host_api* api, gv_host_plugin* self, uint64_t id, std::unique_ptr<Handler> handler)
      : api_(api), self_(self), id_(id), handler_(std::move(handler)) {}
  Subscription(Subscription&& other) noexcept { *this = std::move(other); }
  Subscription& operator=(Subscription&& other) noexcept {
    if (this != &other) {
      cancel();
      api_ = other.api_;
      self_ = other.self_;
      id_ = std::exchange(other.id_, 0);
      handler_ = std::move(other.handler_);
    }
    return *this;
  }
  ~Subscription() { cancel(); }
  // When it returns, the handler is not running and will not run again.
  void cancel() {
    if (id_ != 0) api_->unsubscribe(self_, std::exchange(id_, 0));
  }
  bool active() const { return id_ != 0; }

 private:
  const gv_host_api* api_ = nullptr;
  gv_host_plugin* self_ = nullptr;
  uint64_t id_ = 0;
  std::unique_ptr<Handler> handler_;
};

// A metric in the host's registry (Host::counter, gauge, histogram).
class Metric {
 public:
  Metric() = default;
  Metric(const gv_host_api* api, gv_host_plugin* self, uint64_t id) : api_(api), self_(self), id_(id) {}
  // Counter: adds value; gauge: sets it; histogram: observes it. One label value per label name.
  void record(double value, std::initializer_list<std::string_view> label_values = {}) const {
    gv_bytes labels[16];
    size_t n = 0;
    for (std::string_view v : label_values) {
      if (n == 16) break;
      labels[n++] = {reinterpret_cast<const uint8_t*>(v.data()), v.size()};
    }
    api_->metric_record(self_, id_, labels, n, value);
  }

 private:
  const gv_host_api* api_ = nullptr;
  gv_host_plugin* self_ = nullptr;
  uint64_t id_ = 0;
};

// The outcome of a call to another service (Host::call).
struct CallResult {
  Status status;
  std::string response;  // serialized response message, when status is OK
};

// The host as the plugin sees it: logging and the plugin's config table.
class Host {
 public:
  Host(const gv_host_api* api, gv_host_plugin* self) : api_(api), self_(self) {}

  void log(LogLevel level, std::string_view message) const {
    api_->log(self_, static_cast<gv_log_level>(level), message.data(), message.size());
  }
  bool log_enabled(LogLevel level) const {
    return api_->log_enabled(self_, static_cast<gv_log_level>(level));
  }
  void debug(std::string_view m) const { log(LogLevel::kDebug, m); }
  void info(std::string_view m) const { log(LogLevel::kInfo, m); }
  void warn(std::string_view m) const { log(LogLevel::kWarn, m); }
  void error(std::string_view m) const { log(LogLevel::kError, m); }

  // Config values: declared keys always have a value (the host filled in defaults). Asking for
  // an undeclared key or the wrong type throws Error(kFailedPrecondition).
  std::string config_string(const char* key) const {
    gv_bytes out{};
    check(api_->config_string(self_, key, &out), key, "string");
    return std::string(detail::view(out));
  }
  int64_t config_int(const char* key) const {
    int64_t out = 0;
    check(api_->config_int(self_, key, &out), key, "integer");
    return out;
  }
  double config_double(const char* key) const {
    double out = 0;
    check(api_->config_double(self_, key, &out), key, "float");
    return out;
  }
  bool config_bool(const char* key) const {
    bool out = false;
    check(api_->config_bool(self_, key, &out), key, "boolean");
    return out;
  }

  uint32_t abi_minor() const { return api_->abi_minor; }
  // The document store; keep the Host (or the Store) for use in handlers.
  Store store() const { return Store(api_, self_); }

  // The cache; needs a host with ABI 1.1 (Error kFailedPrecondition otherwise).
  Cache cache() const {
    require_minor(1, "the cache");
    return Cache(api_, self_);
  }

  // Publishes to every subscriber of `topic`, on this host and, with Redis, on every host.
  void publish(std::string_view topic, std::string_view payload) const {
    require_minor(1, "pub/sub");
    char message[512] = {};
    const gv_status_code code = api_->publish(
        self_, {reinterpret_cast<const uint8_t*>(topic.data()), topic.size()},
        {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, {message, sizeof message});
    if (code != GV_STATUS_OK) throw Error(static_cast<StatusCode>(code), message);
  }

  // Calls `handler` with every message published to `topic` from now on, on the host's delivery
  // thread (keep it short). Made in the constructor, it takes over from the previous
  // generation's subscription at a hot reload: every message reaches one of the two.
  Subscription subscribe(std::string_view topic, Subscription::Handler handler) const {
    require_minor(1, "pub/sub");
    auto owned = std::make_unique<Subscription::Handler>(std::move(handler));
    char message[512] = {};
    const uint64_t id = api_->subscribe(self_, {reinterpret_cast<const uint8_t*>(topic.data()), topic.size()},
                                        [](void* context, gv_bytes t, gv_bytes payload) {
                                          (*static_cast<Subscription::Handler*>(context))(
                                              detail::view(t), detail::view(payload));
                                        },
                                        owned.get(), {message, sizeof message});
    if (id == 0) throw Error(StatusCode::kInvalidArgument, message);
    return Subscription(api_, self_, id, std::move(owned));
  }

  // Runs `callback` on a host thread after `delay`, then every `period` (zero: once), keeping the
  // rate: std::chrono::nanoseconds(1'000'000'000 / 60) ticks at 60 Hz. (A host older than ABI 1.1
  // takes whole milliseconds.)
  Timer start_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                    std::function<void()> callback) const {
    auto owned = std::make_unique<std::function<void()>>(std::move(callback));
    char message[256] = {};
    const gv_timer_fn fn = [](void* context) { (*static_cast<std::function<void()>*>(context))(); };
    const uint64_t id = api_->abi_minor >= 1
                            ? api_->timer_start2(self_, static_cast<uint64_t>(delay.count()),
                                                 static_cast<uint64_t>(period.count()), fn, owned.get(),
                                                 {message, sizeof message})
                            : api_->timer_start(self_, static_cast<uint64_t>(delay.count() / 1000000),
                                                static_cast<uint64_t>(period.count() / 1000000), fn,
                                                owned.get(), {message, sizeof message});
    if (id == 0) throw Error(StatusCode::kFailedPrecondition, message);
    return Timer(api_, self_, id, std::move(owned));
  }

  Metric counter(const char* name, const char* help, std::initializer_list<const char*> labels = {}) const {
    return metric(GV_METRIC_COUNTER, name, help, labels, {});
  }
  Metric gauge(const char* name, const char* help, std::initializer_list<const char*> labels = {}) const {
    return metric(GV_METRIC_GAUGE, name, help, labels, {});
  }
  Metric histogram(const char* name, const char* help, std::initializer_list<const char*> labels = {},
                   std::vector<double> buckets = {}) const {
    return metric(GV_METRIC_HISTOGRAM, name, help, labels, std::move(buckets));
  }

  // Calls a unary method of another service in process and waits for its answer. With `parent`,
  // the caller's principal and deadline carry over. Blocks the calling thread: from a handler,
  // prefer call_async.
  CallResult call(std::string_view method, std::string_view request, const CallContext* parent = nullptr,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    struct Waiter {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      CallResult result;
    } waiter;
    call_async(method, request, parent, timeout, [&waiter](CallResult result) {
      std::lock_guard lock(waiter.mu);
      waiter.result = std::move(result);
      waiter.done = true;
      waiter.cv.notify_all();
    });
    std::unique_lock lock(waiter.mu);
    waiter.cv.wait(lock, [&] { return waiter.done; });
    return std::move(waiter.result);
  }

  // Typed: serializes the request, parses the response; failures throw Error with the status.
  template <class Response, class Request>
  Response call(std::string_view method, const Request& request, const CallContext* parent = nullptr,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    CallResult result = call(method, request.SerializeAsString(), parent, timeout);
    if (!result.status.is_ok()) throw Error(result.status.code(), result.status.message());
    Response response;
    if (!response.ParseFromString(result.response)) {
      throw Error(StatusCode::kInternal,
                  std::string(method) + " answered with bytes that are not a " + response.GetTypeName());
    }
    return response;
  }

  // Calls and returns at once; `done` runs once with the outcome, on some thread.
  void call_async(std::string_view method, std::string_view request, const CallContext* parent,
                  std::chrono::milliseconds timeout, std::function<void(CallResult)> done) const {
    auto* context = new std::function<void(CallResult)>(std::move(done));
    api_->call_unary(
        self_, parent != nullptr ? parent->handle() : nullptr,
        gv_bytes{reinterpret_cast<const uint8_t*>(method.data()), method.size()},
        gv_bytes{reinterpret_cast<const uint8_t*>(request.data()), request.size()},
        static_cast<uint64_t>(timeout.count()),
        [](void* ctx, gv_status_code code, gv_bytes message, gv_bytes response) {
          std::unique_ptr<std::function<void(CallResult)>> callback(
              static_cast<std::function<void(CallResult)>*>(ctx));
          (*callback)(CallResult{Status(static_cast<StatusCode>(code), std::string(detail::view(message))),
                                 std::string(detail::view(response))});
        },
        context);
  }
  const gv_host_api* api() const { return api_; }
  gv_host_plugin* self() const { return self_; }

 private:
  Metric metric(gv_metric_kind kind, const char* name, const char* help,
                std::initializer_list<const char*> labels, std::vector<double> buckets) const {
    std::vector<const char*> names(labels);
    const gv_metric_desc desc{sizeof(gv_metric_desc),
                              kind,
                              name,
                              help,
                              names.data(),
                              names.size(),
                              buckets.empty() ? nullptr : buckets.data(),
                              buckets.size()};
    char message[256] = {};
    const uint64_t id = api_->metric_register(self_, &desc, {message, sizeof message});
    if (id == 0) throw Error(StatusCode::kInvalidArgument, message);
    return Metric(api_, self_, id);
  }

  void require_minor(uint32_t minor, const char* what) const {
    if (api_->abi_minor < minor) {
      throw Error(StatusCode::kFailedPrecondition,
                  std::string(what) + " needs a host with ABI 1." + std::to_string(minor) +
                      " or newer; this host speaks ABI 1." + std::to_string(api_->abi_minor));
    }
  }

  static void check(bool found, const char* key, const char* type) {
    if (!found) {
      throw Error(StatusCode::kFailedPrecondition,
                  std::string("config key '") + key + "' is not declared as " + type);
    }
  }
  const gv_host_api* api_;
  gv_host_plugin* self_;
};

struct InitContext {
  Host host;
  // What the previous generation returned from save_state(); empty on a first load.
  std::string_view previous_state;
};

namespace detail {

// A request stream's consumer, type-erased (see StreamReader).
struct InboundSink {
  virtual ~InboundSink() = default;
  virtual void message(gv_bytes bytes) = 0;
  virtual void half_close() = 0;
  virtual void cancel() = 0;
  virtual std::optional<std::string> detach() = 0;
};

// One call as the SDK tracks it. Shared between the host's reference (dropped on release) and
// the handles plugin code holds, so a handle kept on another thread never dangles: once the
// call is finished a handle stops talking to the host.
class CallState {
 public:
  explicit CallState(gv_call* call) : call_(call), deadline_unix_ms_(host_api()->call_deadline(call)) {}

  // Sends bytes; false when the call is finished, cancelled or the host refused them.
  bool send(std::string_view bytes) {
    std::lock_guard lock(mu_);
    if (finished_) return false;
    return host_api()->call_send(call_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) ==
           GV_STATUS_OK;
  }

  template <class Message>
  bool send_message(const Message& message) {
    return with_serialized(message, [this](const uint8_t* data, size_t size) {
      return send(std::string_view(reinterpret_cast<const char*>(data), size));
    });
  }

  // Ends the call; false when it was already finished.
  bool finish(const Status& status) {
    std::lock_guard lock(mu_);
    if (finished_) return false;
    finished_ = true;
    host_api()->call_finish(call_, static_cast<gv_status_code>(status.code()), status.message().data(),
                            status.message().size());
    return true;
  }

  bool finished() {
    std::lock_guard lock(mu_);
    return finished_;
  }

  bool cancelled() {
    std::lock_guard lock(mu_);
    if (cancelled_ || finished_) return cancelled_;
    return host_api()->call_is_cancelled(call_);
  }

  std::chrono::system_clock::time_point deadline() const {
    return CallContext::to_time_point(deadline_unix_ms_);
  }

  // Runs `callback` once when the client cancels; at once when it already has.
  void on_cancel(std::function<void()> callback) {
    std::unique_lock lock(mu_);
    if (cancelled_) {
      lock.unlock();
      callback();
      return;
    }
    cancel_callbacks_.push_back(std::move(callback));
  }

  // Host hook: the client cancelled. Callbacks run, then the call is finished for the plugin.
  void cancel() {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      callbacks.swap(cancel_callbacks_);
    }
    for (auto& callback : callbacks) callback();
    if (inbound_) inbound_->cancel();
    finish(Status(StatusCode::kCancelled, "the client cancelled the call"));
  }

  // Hot reload: stops the stream in this generation and returns what the next one needs; false
  // when the stream cannot move. Afterwards this generation's handles no longer reach the host.
  bool detach(std::string& out) {
    if (!detacher_) return false;
    std::optional<std::string> saved = detacher_();
    if (!saved) return false;
    std::lock_guard lock(mu_);
    if (finished_) return false;
    finished_ = true;  // the call goes on in the next generation, not here
    out = std::move(*saved);
    return true;
  }

  // Drops what plugin code attached to the call; on release, which also breaks the cycle of a
  // reader or session holding a stream handle that holds this state.
  void release() {
    {
      std::lock_guard lock(mu_);
      finished_ = true;  // the handle is gone: no handle copy may reach the host again
    }
    inbound_.reset();
    session_.reset();
    detacher_ = nullptr;
  }

  std::unique_ptr<InboundSink> inbound_;  // client-streaming and bidi only
  std::shared_ptr<void> session_;         // a movable server stream's session
  std::function<std::optional<std::string>()> detacher_;

 private:
  gv_call* call_;
  int64_t deadline_unix_ms_;
  std::mutex mu_;
  bool finished_ = false;
  bool cancelled_ = false;
  std::vector<std::function<void()>> cancel_callbacks_;
};

inline void finish_call(gv_call* call, const Status& status) {
  host_api()->call_finish(call, static_cast<gv_status_code>(status.code()), status.message().data(),
                          status.message().size());
}

template <class Message>
bool parse(gv_bytes bytes, Message& out) {
  return bytes.size <= static_cast<size_t>(std::numeric_limits<int>::max()) &&
         out.ParseFromArray(bytes.data, static_cast<int>(bytes.size));
}

template <class Message>
Status parse_error(const Message& message) {
  return {StatusCode::kInvalidArgument, "request does not parse as " + message.GetTypeName()};
}

// Ends the stream with OK when the last copy of a ServerStream handle is dropped unfinished.
struct StreamOwner {
  explicit StreamOwner(std::shared_ptr<CallState> s) : state(std::move(s)) {}
  ~StreamOwner() { state->finish(Status::ok()); }
  std::shared_ptr<CallState> state;
};

}  // namespace detail

// The reply side of an asynchronous unary call. Move it to any thread and reply() or fail()
// once. Dropping it unanswered ends the call with INTERNAL, so a call never hangs.
template <class Response>
class UnaryResponder {
 public:
  explicit UnaryResponder(std::shared_ptr<detail::CallState> state) : state_(std::move(state)) {}
  UnaryResponder(UnaryResponder&&) noexcept = default;
  UnaryResponder& operator=(UnaryResponder&&) noexcept = default;
  ~UnaryResponder() {
    if (state_) state_->finish(Status(StatusCode::kInternal, "the handler dropped the call unanswered"));
  }

  // False when the call was already finished or cancelled.
  bool reply(const Response& response) {
    if (!state_->send_message(response)) {
      state_->finish(Status(StatusCode::kCancelled, "the call ended before the reply"));
      return false;
    }
    return state_->finish(Status::ok());
  }
  bool fail(const Status& status) { return state_->finish(status); }
  bool cancelled() const { return state_->cancelled(); }
  std::chrono::system_clock::time_point deadline() const { return state_->deadline(); }
  // Runs `callback` (on a host thread) when the client cancels; at once if it already has.
  void on_cancel(std::function<void()> callback) { state_->on_cancel(std::move(callback)); }

 private:
  std::shared_ptr<detail::CallState> state_;
};

// The response side of a streaming call; copies share one stream. write() and finish() are safe
// from any thread. When the last copy is dropped unfinished the stream ends with OK.
template <class Response>
class ServerStream {
 public:
  explicit ServerStream(std::shared_ptr<detail::CallState> state)
      : owner_(std::make_shared<detail::StreamOwner>(std::move(state))) {}

  // False once the client is gone or the stream is finished: stop producing then.
  bool write(const Response& response) const { return owner_->state->send_message(response); }
  bool finish(const Status& status = Status::ok()) const { return owner_->state->finish(status); }
  bool cancelled() const { return owner_->state->cancelled(); }
  std::chrono::system_clock::time_point deadline() const { return owner_->state->deadline(); }
  void on_cancel(std::function<void()> callback) const { owner_->state->on_cancel(std::move(callback)); }

 private:
  std::shared_ptr<detail::StreamOwner> owner_;
};

// Receives the request stream of a client-streaming or bidi call. The SDK calls these one at a
// time per call. Throwing ends the call with the exception's status.
template <class Request>
class StreamReader {
 public:
  using RequestType = Request;
  virtual ~StreamReader() = default;
  virtual void on_message(const Request& request) = 0;
  // The client finished sending; finish the stream here or later.
  virtual void on_half_close() = 0;
  // The client cancelled; the SDK finishes the call with CANCELLED after this returns.
  virtual void on_cancel() {}
  // Hot reload (bidi_stream with a resume function): stop producing and return what the next
  // generation's resume function needs to continue exactly; nullopt keeps the call here.
  virtual std::optional<std::string> detach() { return std::nullopt; }
};

// A live server stream that can move to the next generation on hot reload (see
// PluginBuilder::server_stream_movable). The plugin keeps producing through its ServerStream.
class StreamSession {
 public:
  virtual ~StreamSession() = default;
  // Stop producing (no write may follow once this returns) and return what the next generation's
  // resume function needs to continue without a gap or a repeat.
  virtual std::string detach() = 0;
  // The client cancelled; the SDK finishes the call with CANCELLED after this returns.
  virtual void on_cancel() {}
};

// Base class of a plugin.
class Plugin {
 public:
  virtual ~Plugin() = default;
  // State handed to the next generation on hot reload (InitContext::previous_state).
  virtual std::string save_state() { return {}; }
};

namespace detail {

template <class Request>
class ReaderSink final : public InboundSink {
 public:
  ReaderSink(std::unique_ptr<StreamReader<Request>> reader, std::weak_ptr<CallState> state)
      : reader_(std::move(reader)), state_(std::move(state)) {}

  void message(gv_bytes bytes) override {
    Request request;
    if (!parse(bytes, request)) return fail(parse_error(request));
    guarded([&] { reader_->on_message(request); });
  }
  void half_close() override {
    guarded([&] { reader_->on_half_close(); });
  }
  void cancel() override {
    guarded([&] { reader_->on_cancel(); });
  }
  std::optional<std::string> detach() override { return reader_->detach(); }

 private:
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      fail(status_of_current_exception());
    }
  }
  void fail(const Status& status) {
    if (auto state = state_.lock()) state->finish(status);
  }
  std::unique_ptr<StreamReader<Request>> reader_;
  std::weak_ptr<CallState> state_;
};

template <class P>
struct MethodEntry {
  std::string full_name;
  gv_call_kind kind;
  // Starts the call; returns the state the host keeps for it, or null when the call is done.
  std::function<std::shared_ptr<CallState>(P&, gv_call*, gv_bytes)> start;
  uint32_t flags = 0;
  // Continues a call detached from the previous generation (movable methods only).
  std::function<std::shared_ptr<CallState>(P&, gv_call*, gv_bytes)> adopt;
  std::string access;  // empty: nothing declared, which the host's gate treats as "authenticated"
};

struct ConfigKeyEntry {
  std::string key;
  gv_config_type type;
  bool required;
  std::optional<std::string> default_literal;
  std::string description;
};

inline std::string toml_string_literal(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace detail

// Access policies for PluginBuilder::access.
inline constexpr const char* kPublic = "public";
inline constexpr const char* kAuthenticated = "authenticated";

// What a plugin's describe() fills in: its methods, config keys and dependencies.
template <class P>
class PluginBuilder {
 public:
  template <class Req, class Resp>
  PluginBuilder& unary(const char* full_name, Status (P::*fn)(CallContext&, const Req&, Resp&)) {
    return add(full_name, GV_CALL_UNARY,
               [fn](P& plugin, gv_call* call, gv_bytes bytes) -> std::shared_ptr<detail::CallState> {
                 Req request;
                 if (!detail::parse(bytes, request)) {
                   detail::finish_call(call, detail::parse_error(request));
                   return nullptr;
                 }
                 Resp response;
                 CallContext context(call);
                 Status status;
                 try {
                   status = (plugin.*fn)(context, request, response);
                 } catch (...) {
                   status = detail::status_of_current_exception();
                 }
                 if (status.is_ok()) {
                   detail::with_serialized(response, [call](const uint8_t* data, size_t size) {
                     return detail::host_api()->call_send(call, data, size);
                   });
                 }
                 detail::finish_call(call, status);
                 return nullptr;
               });
  }

  // A unary method that answers later, from any thread, through the UnaryResponder.
  template <class Req, class Resp>
  PluginBuilder& unary_async(const char* full_name,
                             void (P::*fn)(CallContext&, const Req&, UnaryResponder<Resp>)) {
    return add(full_name, GV_CALL_UNARY, request_starter(fn));
  }

  template <class Req, class Resp>
  PluginBuilder& server_stream(const char* full_name,
                               void (P::*fn)(CallContext&, const Req&, ServerStream<Resp>)) {
    return add(full_name, GV_CALL_SERVER_STREAMING, request_starter(fn));
  }

  // A server stream that moves to the next generation on hot reload: `open` starts it and
  // returns its session; on reload the session's detach() stops it and `resume` of the next
  // generation continues it from what detach() returned.
  template <class Req, class Resp>
  PluginBuilder& server_stream_movable(const char* full_name,
                                       std::unique_ptr<StreamSession> (P::*open)(CallContext&, const Req&,
                                                                                 ServerStream<Resp>),
                                       std::unique_ptr<StreamSession> (P::*resume)(std::string_view detached,
                                                                                   ServerStream<Resp>)) {
    add(full_name, GV_CALL_SERVER_STREAMING, [open](P& plugin, gv_call* call, gv_bytes bytes) {
      auto state = std::make_shared<detail::CallState>(call);
      Req request;
      if (!detail::parse(bytes, request)) {
        state->finish(detail::parse_error(request));
        return state;
      }
      CallContext context(call);
      attach_session(state, [&] { return (plugin.*open)(context, request, ServerStream<Resp>(state)); });
      return state;
    });
    methods_.back().flags = GV_METHOD_MOVABLE;
    methods_.back().adopt = [resume](P& plugin, gv_call* call, gv_bytes detached) {
      auto state = std::make_shared<detail::CallState>(call);
      attach_session(state,
                     [&] { return (plugin.*resume)(detail::view(detached), ServerStream<Resp>(state)); });
      return state;
    };
    return *this;
  }

  // Client streaming: the reader gets every request; it writes the one response to the stream.
  template <class Req, class Resp>
  PluginBuilder& client_stream(const char* full_name,
                               std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&,
                                                                           ServerStream<Resp>)) {
    return add(full_name, GV_CALL_CLIENT_STREAMING, reader_starter<Req, Resp>(fn));
  }

  template <class Req, class Resp>
  PluginBuilder& bidi_stream(const char* full_name,
                             std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>)) {
    return add(full_name, GV_CALL_BIDI_STREAMING, reader_starter<Req, Resp>(fn));
  }

  // A bidi stream that moves to the next generation on hot reload: the reader's detach() stops
  // it, and `resume` of the next generation returns the reader that continues it.
  template <class Req, class Resp>
  PluginBuilder& bidi_stream(const char* full_name,
                             std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>),
                             std::unique_ptr<StreamReader<Req>> (P::*resume)(std::string_view detached,
                                                                             ServerStream<Resp>)) {
    add(full_name, GV_CALL_BIDI_STREAMING, reader_starter<Req, Resp>(fn));
    methods_.back().flags = GV_METHOD_MOVABLE;
    methods_.back().adopt = [resume](P& plugin, gv_call* call, gv_bytes detached) {
      auto state = std::make_shared<detail::CallState>(call);
      attach_reader(state,
                    [&] { return (plugin.*resume)(detail::view(detached), ServerStream<Resp>(state)); });
      return state;
    };
    return *this;
  }

  PluginBuilder& config_string(const char* key, std::string_view default_value, const char* description) {
    return config(key, GV_CONFIG_STRING, detail::toml_string_literal(default_value), description);
  }
  PluginBuilder& config_int(const char* key, int64_t default_value, const char* description) {
    return config(key, GV_CONFIG_INT, std::to_string(default_value), description);
  }
  PluginBuilder& config_double(const char* key, double default_value, const char* description) {
    std::string literal = std::to_string(default_value);
    return config(key, GV_CONFIG_DOUBLE, literal, description);
  }
  PluginBuilder& config_bool(const char* key, bool default_value, const char* description) {
    return config(key, GV_CONFIG_BOOL, default_value ? "true" : "false", description);
  }
  // A key the operator must set; the host refuses the load without it.
  PluginBuilder& config_required(const char* key, gv_config_type type, const char* description) {
    config_keys_.push_back({key, type, true, std::nullopt, description});
    return *this;
  }

  // A service ("package.Service") this plugin calls; the host loads its owner first.
  PluginBuilder& depends_on(const char* service) {
    dependencies_.emplace_back(service);
    return *this;
  }

  // Who may call a method at the host's gate: kPublic (anyone), kAuthenticated (any signed-in
  // caller; also what a method without a declaration gets) or role("moderator"). The host's
  // config ([plugin.access]) can override it.
  PluginBuilder& access(const char* full_name, std::string policy) {
    for (auto& m : methods_) {
      if (m.full_name == full_name) {
        m.access = std::move(policy);
        return *this;
      }
    }
    throw std::logic_error(std::string("access() for ") + full_name + ", which is not registered (yet)");
  }
  // The same policy for every method registered so far.
  PluginBuilder& access_all(const std::string& policy) {
    for (auto& m : methods_) m.access = policy;
    return *this;
  }
  static std::string role(std::string_view name) { return "role:" + std::string(name); }

  // A store collection this plugin uses ([a-z0-9_-], at most 64): its own, namespaced by plugin.
  PluginBuilder& collection(const char* name) {
    collections_.emplace_back(name);
    return *this;
  }

  std::vector<detail::MethodEntry<P>> methods_;
  std::vector<detail::ConfigKeyEntry> config_keys_;
  std::vector<std::string> dependencies_;
  std::vector<std::string> collections_;

 private:
  template <class F>
  PluginBuilder& add(const char* full_name, gv_call_kind kind, F&& start) {
    methods_.push_back({full_name, kind, std::forward<F>(start), 0, nullptr, {}});
    return *this;
  }

  PluginBuilder& config(const char* key, gv_config_type type, std::string literal, const char* description) {
    config_keys_.push_back({key, type, false, std::move(literal), description});
    return *this;
  }

  // Parses the one request and hands it to the handler with a response handle over the call.
  template <class Req, class Handle>
  static auto request_starter(void (P::*fn)(CallContext&, const Req&, Handle)) {
    return [fn](P& plugin, gv_call* call, gv_bytes bytes) {
      auto state = std::make_shared<detail::CallState>(call);
      Req request;
      if (!detail::parse(bytes, request)) {
        state->finish(detail::parse_error(request));
        return state;
      }
      CallContext context(call);
      try {
        (plugin.*fn)(context, request, Handle(state));
      } catch (...) {
        state->finish(detail::status_of_current_exception());
      }
      return state;
    };
  }

  template <class Req, class Resp>
  static auto reader_starter(std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>)) {
    return [fn](P& plugin, gv_call* call, gv_bytes) {
      auto state = std::make_shared<detail::CallState>(call);
      CallContext context(call);
      attach_reader(state, [&] { return (plugin.*fn)(context, ServerStream<Resp>(state)); });
      return state;
    };
  }

  // Runs the factory and attaches its reader to the call; failures finish the call.
  template <class Factory>
  static void attach_reader(const std::shared_ptr<detail::CallState>& state, Factory&& factory) {
    try {
      auto reader = factory();
      if (!reader) throw Error(StatusCode::kInternal, "the handler returned no stream reader");
      using Request = typename std::remove_reference_t<decltype(*reader)>::RequestType;
      auto sink = std::make_unique<detail::ReaderSink<Request>>(std::move(reader), state);
      detail::InboundSink* raw = sink.get();
      state->inbound_ = std::move(sink);
      state->detacher_ = [raw] { return raw->detach(); };
    } catch (...) {
      state->finish(detail::status_of_current_exception());
    }
  }

  // Runs the factory and attaches its session to the call; failures finish the call.
  template <class Factory>
  static void attach_session(const std::shared_ptr<detail::CallState>& state, Factory&& factory) {
    try {
      std::shared_ptr<StreamSession> session = factory();
      if (!session) throw Error(StatusCode::kInternal, "the handler returned no stream session");
      state->session_ = session;
      StreamSession* raw = session.get();
      state->on_cancel([raw] { raw->on_cancel(); });
      state->detacher_ = [raw]() -> std::optional<std::string> { return raw->detach(); };
    } catch (...) {
      state->finish(detail::status_of_current_exception());
    }
  }
};

namespace detail {

// Everything the descriptor points at, built once per loaded library.
template <class P>
struct Registration {
  PluginBuilder<P> builder;
  std::vector<gv_method_desc> methods;
  std::vector<gv_config_key_desc> config_keys;
  std::vector<const char*> dependencies;
  std::vector<const char*> collections;
  std::vector<const char*> method_access;
  gv_plugin_descriptor descriptor{};

  static Registration& get() {
    static Registration registration;
    return registration;
  }

  static gv_status_code on_init(const gv_host_api* host, gv_host_plugin* self, gv_bytes prev_state,
                                void** out_instance, gv_message_buffer error) {
    try {
      host_api() = host;
      InitContext init{Host(host, self), view(prev_state)};
      *out_instance = new P(init);
      return GV_STATUS_OK;
    } catch (...) {
      Status status = status_of_current_exception();
      write_message(error, status.message());
      return status.is_ok() ? GV_STATUS_INTERNAL : static_cast<gv_status_code>(status.code());
    }
  }

  static void on_call_start(void* instance, gv_call* call, uint32_t method_index, gv_bytes request,
                            void** out_call_state) {
    try {
      auto state = get().builder.methods_.at(method_index).start(*static_cast<P*>(instance), call, request);
      if (state) *out_call_state = new std::shared_ptr<CallState>(std::move(state));
    } catch (...) {
      // Only reachable when the state itself could not be allocated: the call is unfinished.
      finish_call(call, status_of_current_exception());
    }
  }

  static CallState& state_of(void* call_state) {
    return **static_cast<std::shared_ptr<CallState>*>(call_state);
  }

  static void on_call_message(void*, gv_call*, void* call_state, gv_bytes message) {
    if (!call_state) return;
    CallState& state = state_of(call_state);
    if (state.inbound_ && !state.finished()) state.inbound_->message(message);
  }

  static void on_call_half_close(void*, gv_call*, void* call_state) {
    if (!call_state) return;
    CallState& state = state_of(call_state);
    if (state.inbound_ && !state.finished()) state.inbound_->half_close();
  }

  static void on_call_cancel(void*, gv_call*, void* call_state) {
    if (call_state) state_of(call_state).cancel();
  }

  static void on_call_release(void*, gv_call*, void* call_state) {
    if (!call_state) return;
    auto* box = static_cast<std::shared_ptr<CallState>*>(call_state);
    (*box)->release();
    delete box;
  }

  static gv_status_code on_call_detach(void*, gv_call*, void* call_state, gv_state_sink* sink) {
    if (!call_state) return GV_STATUS_FAILED_PRECONDITION;
    try {
      std::string detached;
      if (!state_of(call_state).detach(detached)) return GV_STATUS_FAILED_PRECONDITION;
      sink->append(sink, reinterpret_cast<const uint8_t*>(detached.data()), detached.size());
      return GV_STATUS_OK;
    } catch (...) {
      return GV_STATUS_INTERNAL;
    }
  }

  static gv_status_code on_call_adopt(void* instance, gv_call* call, uint32_t method_index, gv_bytes detached,
                                      void** out_call_state) {
    try {
      const auto& method = get().builder.methods_.at(method_index);
      if (!method.adopt) return GV_STATUS_UNIMPLEMENTED;
      auto state = method.adopt(*static_cast<P*>(instance), call, detached);
      if (state) *out_call_state = new std::shared_ptr<CallState>(std::move(state));
      return GV_STATUS_OK;
    } catch (...) {
      return GV_STATUS_INTERNAL;
    }
  }

  static gv_status_code on_save_state(void* instance, gv_state_sink* sink, gv_message_buffer error) {
    try {
      std::string state = static_cast<P*>(instance)->save_state();
      sink->append(sink, reinterpret_cast<const uint8_t*>(state.data()), state.size());
      return GV_STATUS_OK;
    } catch (...) {
      Status status = status_of_current_exception();
      write_message(error, status.message());
      return status.is_ok() ? GV_STATUS_INTERNAL : static_cast<gv_status_code>(status.code());
    }
  }

  static void on_shutdown(void* instance) { delete static_cast<P*>(instance); }

  Registration() { P::describe(builder); }

  const gv_plugin_descriptor* describe(const char* name, const char* version, const char* description,
                                       gv_bytes descriptor_set) {
    for (const auto& m : builder.methods_) {
      methods.push_back({sizeof(gv_method_desc), m.full_name.c_str(), m.kind, m.flags});
      method_access.push_back(m.access.empty() ? nullptr : m.access.c_str());
    }
    for (const auto& k : builder.config_keys_) {
      config_keys.push_back({sizeof(gv_config_key_desc), k.key.c_str(), k.type, k.required,
                             k.default_literal ? k.default_literal->c_str() : nullptr,
                             k.description.c_str()});
    }
    for (const auto& d : builder.dependencies_) dependencies.push_back(d.c_str());
    for (const auto& c : builder.collections_) collections.push_back(c.c_str());

    descriptor.struct_size = sizeof descriptor;
    descriptor.abi_major = GV_ABI_VERSION_MAJOR;
    descriptor.abi_minor = GV_ABI_VERSION_MINOR;
    descriptor.name = name;
    descriptor.version = version;
    descriptor.description = description;
    descriptor.descriptor_set = descriptor_set;
    descriptor.methods = methods.data();
    descriptor.method_count = methods.size();
    descriptor.config_keys = config_keys.data();
    descriptor.config_key_count = config_keys.size();
    descriptor.dependencies = dependencies.data();
    descriptor.dependency_count = dependencies.size();
    descriptor.on_init = &on_init;
    descriptor.on_call_start = &on_call_start;
    descriptor.on_call_message = &on_call_message;
    descriptor.on_call_half_close = &on_call_half_close;
    descriptor.on_call_cancel = &on_call_cancel;
    descriptor.on_call_release = &on_call_release;
    descriptor.on_save_state = &on_save_state;
    descriptor.on_shutdown = &on_shutdown;
    descriptor.on_call_detach = &on_call_detach;
    descriptor.on_call_adopt = &on_call_adopt;
    descriptor.collections = collections.data();
    descriptor.collection_count = collections.size();
    descriptor.method_access = method_access.data();
    return &descriptor;
  }
};

template <class P>
const gv_plugin_descriptor* entry(const char* name, const char* version, const char* description,
                                  gv_bytes descriptor_set) noexcept {
  try {
    static const gv_plugin_descriptor* descriptor =
        Registration<P>::get().describe(name, version, description, descriptor_set);
    return descriptor;
  } catch (...) {
    return nullptr;
  }
}

}  // namespace detail
}  // namespace gameverse::sdk

// The FileDescriptorSet that gameverse_add_plugin() embeds from the plugin's PROTOS.
extern "C" const unsigned char gv_embedded_descriptor_set_data[];
extern "C" const size_t gv_embedded_descriptor_set_size;

// Exports the plugin: the one line after the class.
#define GAMEVERSE_PLUGIN(PluginClass, name, version, description)                                            \
  extern "C" GV_PLUGIN_EXPORT const gv_plugin_descriptor* gv_plugin_entry_v1(const gv_host_info* /*host*/) { \
    return ::gameverse::sdk::detail::entry<PluginClass>(                                                     \
        name, version, description,                                                                          \
        gv_bytes{gv_embedded_descriptor_set_data, gv_embedded_descriptor_set_size});                         \
  }
