// The function table plugins reach the host through (gv_host_api).
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#include "logging/context.hpp"
#include "logging/request_id.hpp"
#include "platform/cache.hpp"
#include "platform/metrics.hpp"
#include "platform/pubsub.hpp"
#include "platform/service_calls.hpp"
#include "platform/store_service.hpp"
#include "platform/timers.hpp"
#include "platform/work_pool.hpp"
#include "plugin/call.hpp"
#include "plugin/plugin.hpp"

namespace gameverse::plugin {

namespace {

spdlog::level::level_enum to_spdlog(gv_log_level level) {
  switch (level) {
    case GV_LOG_TRACE: return spdlog::level::trace;
    case GV_LOG_DEBUG: return spdlog::level::debug;
    case GV_LOG_INFO: return spdlog::level::info;
    case GV_LOG_WARN: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

void log(gv_host_plugin* self, gv_log_level level, const char* message, size_t size) {
  self->logger->log(to_spdlog(level), std::string_view(message, size));
}

bool log_enabled(gv_host_plugin* self, gv_log_level level) {
  return self->logger->should_log(to_spdlog(level));
}

template <class T>
const T* config_value(gv_host_plugin* self, const char* key) {
  if (key == nullptr) return nullptr;
  auto it = self->config.find(std::string_view(key));
  return it == self->config.end() ? nullptr : std::get_if<T>(&it->second);
}

bool config_string(gv_host_plugin* self, const char* key, gv_bytes* out) {
  const auto* value = config_value<std::string>(self, key);
  if (value == nullptr) return false;
  *out = {reinterpret_cast<const uint8_t*>(value->data()), value->size()};
  return true;
}

template <class T>
bool config_scalar(gv_host_plugin* self, const char* key, T* out) {
  const auto* value = config_value<T>(self, key);
  if (value == nullptr) return false;
  *out = *value;
  return true;
}

gv_status_code call_send(gv_call* call, const uint8_t* data, size_t size) {
  return call->send(data, size);
}

gv_status_code call_finish(gv_call* call, gv_status_code code, const char* message, size_t size) {
  return call->finish(code, message == nullptr ? std::string_view() : std::string_view(message, size));
}

int64_t call_deadline(gv_call* call) {
  return call->deadline_unix_ms();
}
bool call_is_cancelled(gv_call* call) {
  return call->is_cancelled();
}
size_t call_metadata(gv_call* call, const char* key, gv_bytes* values, size_t max_values) {
  return call->metadata(key, values, max_values);
}
void call_principal(gv_call* call, gv_principal* out) {
  call->principal(out);
}
gv_bytes call_method(gv_call* call) {
  return call->method();
}
gv_call_origin call_origin(gv_call* call) {
  return call->origin();
}
gv_bytes call_peer(gv_call* call) {
  return call->peer();
}

std::string as_string(gv_bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data), bytes.size};
}

gv_bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void write_message(gv_message_buffer buffer, std::string_view message) {
  if (buffer.data == nullptr || buffer.capacity == 0) return;
  const size_t n = std::min(message.size(), buffer.capacity - 1);
  std::memcpy(buffer.data, message.data(), n);
  buffer.data[n] = '\0';
}

// Runs a platform operation, turning every failure into a status and a message.
template <class F>
gv_status_code guarded(gv_host_plugin* self, gv_message_buffer error, const char* what, F&& f) {
  try {
    f();
    return GV_STATUS_OK;
  } catch (const platform::PlatformError& e) {
    write_message(error, e.what());
    return e.code();
  } catch (const std::exception& e) {
    self->logger->error("{} failure: {}", what, e.what());
    write_message(error, std::string(what) + " failure: " + e.what());
    return GV_STATUS_INTERNAL;
  }
}

template <class F>
gv_status_code guarded_store(gv_host_plugin* self, gv_message_buffer error, F&& f) {
  return guarded(self, error, "store", [&] {
    if (self->platform == nullptr || self->platform->store == nullptr)
      throw platform::PlatformError(GV_STATUS_UNAVAILABLE, "this host has no store configured");
    f(*self->platform->store);
  });
}

void visit_object(const platform::StoredObject& o, gv_store_visit_fn visit, void* context) {
  gv_store_object object{sizeof(gv_store_object), as_bytes(o.collection), as_bytes(o.key),
                         as_bytes(o.value),       as_bytes(o.owner),      o.version,
                         o.created_unix_ms,       o.updated_unix_ms};
  visit(context, &object);
}

gv_status_code store_get(gv_host_plugin* self, gv_bytes collection, gv_bytes key, gv_store_visit_fn visit,
                         void* context, gv_message_buffer error) {
  bool found = false;
  const gv_status_code code = guarded_store(self, error, [&](platform::Store& store) {
    if (auto object = store.get(self->name, self->collections, as_string(collection), as_string(key))) {
      found = true;
      visit_object(*object, visit, context);
    }
  });
  if (code == GV_STATUS_OK && !found) {
    write_message(error, "no object with that key in collection '" + as_string(collection) + "'");
    return GV_STATUS_NOT_FOUND;
  }
  return code;
}

gv_status_code store_write(gv_host_plugin* self, const gv_store_write* writes, size_t count,
                           int64_t* new_versions, gv_message_buffer error) {
  return guarded_store(self, error, [&](platform::Store& store) {
    std::vector<platform::StoreWrite> batch;
    batch.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      const gv_store_write& w = writes[i];
      if (w.kind != GV_STORE_PUT && w.kind != GV_STORE_DELETE) {
        throw platform::PlatformError(
            GV_STATUS_INVALID_ARGUMENT,
            "write " + std::to_string(i) + ": kind " + std::to_string(w.kind) + " is not a write");
      }
      batch.push_back(
          {w.kind == GV_STORE_PUT ? platform::StoreWrite::Kind::kPut : platform::StoreWrite::Kind::kDelete,
           as_string(w.collection), as_string(w.key), as_string(w.value), as_string(w.owner),
           w.expected_version});
    }
    const std::vector<int64_t> versions = store.write(self->name, self->collections, batch);
    if (new_versions != nullptr) std::copy(versions.begin(), versions.end(), new_versions);
  });
}

gv_status_code store_list(gv_host_plugin* self, const gv_store_query* query, gv_store_visit_fn visit,
                          void* context, gv_byte_sink* next_cursor, gv_message_buffer error) {
  return guarded_store(self, error, [&](platform::Store& store) {
    platform::StoreQuery q{as_string(query->collection), as_string(query->key_prefix),
                           as_string(query->owner), "", query->limit};
    const platform::ListResult result =
        store.list(self->name, self->collections, q, as_string(query->cursor));
    for (const auto& object : result.page.objects) visit_object(object, visit, context);
    if (!result.next_cursor.empty() && next_cursor != nullptr) {
      next_cursor->append(next_cursor, reinterpret_cast<const uint8_t*>(result.next_cursor.data()),
                          result.next_cursor.size());
    }
  });
}

// --- Operation metrics ----------------------------------------------------------------------------

// Store, cache and pub/sub operations, per plugin: counted by status code, and timed.
void record_operation(gv_host_plugin* self, const char* service, const char* operation, gv_status_code code,
                      std::chrono::steady_clock::duration took) {
  platform::MetricsRegistry* metrics = self->platform == nullptr ? nullptr : self->platform->metrics;
  if (metrics == nullptr) return;
  std::call_once(self->operation_metrics_once, [&] {
    try {
      self->operations_metric = metrics->register_metric(
          self->name, {GV_METRIC_COUNTER,
                       "gameverse_platform_operations_total",
                       "Store, cache and pub/sub operations of plugins, by status code.",
                       {"service", "operation", "code"},
                       {}});
      self->operation_seconds_metric = metrics->register_metric(
          self->name, {GV_METRIC_HISTOGRAM,
                       "gameverse_platform_operation_duration_seconds",
                       "How long plugins' store, cache and pub/sub operations took.",
                       {"service", "operation"},
                       {0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}});
    } catch (const std::exception& e) {
      self->operations_metric = self->operation_seconds_metric = 0;
      self->logger->warn("operation metrics: {}", e.what());
    }
  });
  if (self->operations_metric == 0) return;
  metrics->record(self->name, self->operations_metric, {service, operation, platform::status_code_name(code)},
                  1);
  metrics->record(self->name, self->operation_seconds_metric, {service, operation},
                  std::chrono::duration<double>(took).count());
}

// Service and Operation name the metric's labels; Function is the operation as the table exports it.
template <const char* Service, const char* Operation, auto Function>
struct Measured;
template <const char* Service, const char* Operation, class... Args,
          gv_status_code (*Function)(gv_host_plugin*, Args...)>
struct Measured<Service, Operation, Function> {
  static gv_status_code call(gv_host_plugin* self, Args... args) {
    const auto start = std::chrono::steady_clock::now();
    const gv_status_code code = Function(self, args...);
    record_operation(self, Service, Operation, code, std::chrono::steady_clock::now() - start);
    return code;
  }
};
constexpr char kStore[] = "store";
constexpr char kCache[] = "cache";
constexpr char kPubSub[] = "pubsub";
constexpr char kGet[] = "get";
constexpr char kWrite[] = "write";
constexpr char kList[] = "list";
constexpr char kSet[] = "set";
constexpr char kDelete[] = "delete";
constexpr char kIncrement[] = "increment";
constexpr char kCompareAndSet[] = "compare_and_set";
constexpr char kPublish[] = "publish";

// --- Blocking work (1.2) ---------------------------------------------------------------------------

platform::WorkPool& pool(gv_host_plugin* self) {
  if (self->platform == nullptr || self->platform->blocking == nullptr)
    throw platform::PlatformError(GV_STATUS_UNAVAILABLE, "this host has no pool for blocking work");
  return *self->platform->blocking;
}

// Serials in the blocking pool for timers' and subscriptions' callbacks, unique in the host.
uint64_t next_serial() {
  static std::atomic<uint64_t> serial{1};
  return serial++;
}

// The request id of `call`, or of the call this thread works for when there is none; empty when
// neither is known.
std::string request_id_of(const gv_call* call) {
  if (call != nullptr) return std::string(call->request_id());
  const logging::CallLogContext* current = logging::current_call();
  return current != nullptr ? std::string(current->request_id) : std::string();
}

gv_status_code run_blocking(gv_host_plugin* self, gv_call* call, gv_work_fn fn, void* context,
                            gv_message_buffer error) {
  return guarded(self, error, "blocking work", [&] {
    if (fn == nullptr) throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, "no work function");
    platform::WorkPool::Precheck precheck;
    if (call != nullptr) {
      precheck = [ended = call->ended_flag(), deadline = call->deadline_unix_ms()] {
        if (ended->load()) return GV_STATUS_CANCELLED;
        if (deadline != INT64_MAX && platform::now_unix_ms() >= deadline) return GV_STATUS_DEADLINE_EXCEEDED;
        return GV_STATUS_OK;
      };
    }
    std::string why;
    const gv_status_code code = pool(self).submit(
        self, self->name, 0,
        [fn, context, request_id = request_id_of(call), self](gv_status_code status) {
          // The work belongs to the call it was queued for: its lines carry that call's id.
          const logging::CallLogContext call_log{request_id, self->name, self->logger->generation()};
          const logging::CallLogScope log_scope(request_id.empty() ? nullptr : &call_log);
          fn(context, status);
        },
        std::move(precheck), false, &why, call != nullptr ? call->request_bytes() : 0);
    if (code != GV_STATUS_OK) throw platform::PlatformError(code, why);
  });
}

gv_status_code timer_start3(gv_host_plugin* self, uint64_t delay_ns, uint64_t period_ns, uint32_t flags,
                            gv_timer_fn fn, void* context, uint64_t* out_timer_id, gv_message_buffer error) {
  return guarded(self, error, "timer", [&] {
    if (fn == nullptr) throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, "no timer callback");
    if (self->platform == nullptr || self->platform->timers == nullptr)
      throw platform::PlatformError(GV_STATUS_UNAVAILABLE, "this host has no timers");
    if (flags & ~static_cast<uint32_t>(GV_RUN_BLOCKING))
      throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT,
                                    "unknown timer flags " + std::to_string(flags));
    std::function<void()> callback = [fn, context] { fn(context); };
    uint64_t serial = 0;
    if (flags & GV_RUN_BLOCKING) {
      platform::WorkPool& blocking = pool(self);
      serial = next_serial();
      // A run that is due while the previous one still waits is skipped: runs never pile up.
      callback = [&blocking, self, serial, fn, context] {
        blocking.submit(
            self, self->name, serial,
            [fn, context](gv_status_code status) {
              if (status == GV_STATUS_OK) fn(context);
            },
            {}, true);
      };
    }
    std::lock_guard lock(self->blocking_mu);
    const uint64_t id = self->platform->timers->start(
        self, std::chrono::nanoseconds(delay_ns), std::chrono::nanoseconds(period_ns), std::move(callback));
    if (serial != 0) self->blocking_timers.emplace(id, serial);
    if (out_timer_id != nullptr) *out_timer_id = id;
  });
}

uint64_t timer_start2(gv_host_plugin* self, uint64_t delay_ns, uint64_t period_ns, gv_timer_fn fn,
                      void* context, gv_message_buffer error) {
  uint64_t id = 0;
  timer_start3(self, delay_ns, period_ns, 0, fn, context, &id, error);
  return id;
}

uint64_t timer_start(gv_host_plugin* self, uint64_t delay_ms, uint64_t period_ms, gv_timer_fn fn,
                     void* context, gv_message_buffer error) {
  return timer_start2(self, delay_ms * 1000000, period_ms * 1000000, fn, context, error);
}

// The serial in the blocking pool of a timer or subscription that runs there, taken out of `ids`.
uint64_t take_serial(gv_host_plugin* self, std::map<uint64_t, uint64_t>& ids, uint64_t id) {
  std::lock_guard lock(self->blocking_mu);
  auto it = ids.find(id);
  if (it == ids.end()) return 0;
  const uint64_t serial = it->second;
  ids.erase(it);
  return serial;
}

void timer_cancel(gv_host_plugin* self, uint64_t timer_id) {
  if (self->platform == nullptr || self->platform->timers == nullptr) return;
  self->platform->timers->cancel(timer_id);
  if (const uint64_t serial = take_serial(self, self->blocking_timers, timer_id); serial != 0)
    self->platform->blocking->cancel_serial(self, serial);
}

gv_status_code metric_register2(gv_host_plugin* self, const gv_metric_desc* desc, uint64_t* out_metric_id,
                                gv_message_buffer error) {
  return guarded(self, error, "metric", [&] {
    if (self->platform == nullptr || self->platform->metrics == nullptr)
      throw platform::PlatformError(GV_STATUS_UNAVAILABLE, "this host has no metrics registry");
    if (desc == nullptr) throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, "no metric description");
    platform::MetricDefinition d;
    d.kind = desc->kind;
    d.name = desc->name != nullptr ? desc->name : "";
    d.help = desc->help != nullptr ? desc->help : "";
    for (size_t i = 0; i < desc->label_count; ++i)
      d.label_names.emplace_back(desc->label_names[i] != nullptr ? desc->label_names[i] : "");
    if (desc->buckets != nullptr) d.buckets.assign(desc->buckets, desc->buckets + desc->bucket_count);
    uint64_t id = 0;
    try {
      id = self->platform->metrics->register_metric(self->name, std::move(d));
    } catch (const std::invalid_argument& e) {
      throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, e.what());
    }
    if (out_metric_id != nullptr) *out_metric_id = id;
  });
}

uint64_t metric_register(gv_host_plugin* self, const gv_metric_desc* desc, gv_message_buffer error) {
  uint64_t id = 0;
  metric_register2(self, desc, &id, error);
  return id;
}

void metric_record(gv_host_plugin* self, uint64_t metric_id, const gv_bytes* label_values, size_t label_count,
                   double value) {
  if (self->platform == nullptr || self->platform->metrics == nullptr) return;
  std::vector<std::string> labels;
  labels.reserve(label_count);
  for (size_t i = 0; i < label_count; ++i) labels.push_back(as_string(label_values[i]));
  self->platform->metrics->record(self->name, metric_id, labels, value);
}

void call_unary(gv_host_plugin* self, gv_call* parent, gv_bytes method, gv_bytes request, uint64_t timeout_ms,
                gv_call_done_fn done, void* context) {
  if (self->platform == nullptr) {
    const std::string message = "this host cannot route calls between plugins";
    done(context, GV_STATUS_UNAVAILABLE, as_bytes(message), gv_bytes{nullptr, 0});
    return;
  }
  platform::call_unary(*self->platform, self->name, parent, as_string(method), as_string(request), timeout_ms,
                       done, context, self);
}

// Cached values and pub/sub messages are held to the store's max_value_bytes.
void check_size(gv_host_plugin* self, const char* what, gv_bytes bytes) {
  if (bytes.size > self->platform->max_value_bytes) {
    throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT,
                                  std::string(what) + " is " + std::to_string(bytes.size) +
                                      " bytes; the limit is " +
                                      std::to_string(self->platform->max_value_bytes));
  }
}

constexpr size_t kMaxCacheKeyBytes = 512;

// The backend's key: the plugin's name in front, so plugins never see each other's keys.
std::string cache_key(gv_host_plugin* self, gv_bytes key) {
  if (self->platform == nullptr || self->platform->cache == nullptr)
    throw platform::PlatformError(GV_STATUS_UNAVAILABLE, "this host has no cache configured");
  if (key.size == 0) throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, "the cache key is empty");
  if (key.size > kMaxCacheKeyBytes) {
    throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, "the cache key is " + std::to_string(key.size) +
                                                                  " bytes long; the limit is " +
                                                                  std::to_string(kMaxCacheKeyBytes));
  }
  return "gameverse:cache:" + self->name + ":" + as_string(key);
}

gv_status_code cache_get(gv_host_plugin* self, gv_bytes key, gv_byte_sink* value, gv_message_buffer error) {
  bool found = false;
  const gv_status_code code = guarded(self, error, "cache", [&] {
    if (auto cached = self->platform->cache->get(cache_key(self, key))) {
      found = true;
      if (value != nullptr)
        value->append(value, reinterpret_cast<const uint8_t*>(cached->data()), cached->size());
    }
  });
  if (code == GV_STATUS_OK && !found) {
    write_message(error, "no cached value under that key");
    return GV_STATUS_NOT_FOUND;
  }
  return code;
}

gv_status_code cache_set(gv_host_plugin* self, gv_bytes key, gv_bytes value, uint64_t ttl_ms,
                         gv_message_buffer error) {
  return guarded(self, error, "cache", [&] {
    const std::string backend_key = cache_key(self, key);
    check_size(self, "the value", value);
    self->platform->cache->set(backend_key, as_string(value),
                               std::chrono::milliseconds(static_cast<int64_t>(ttl_ms)));
  });
}

gv_status_code cache_delete(gv_host_plugin* self, gv_bytes key, gv_message_buffer error) {
  return guarded(self, error, "cache", [&] { self->platform->cache->erase(cache_key(self, key)); });
}

gv_status_code cache_increment(gv_host_plugin* self, gv_bytes key, int64_t delta, uint64_t ttl_ms,
                               int64_t* value, gv_message_buffer error) {
  return guarded(self, error, "cache", [&] {
    const int64_t result = self->platform->cache->increment(
        cache_key(self, key), delta, std::chrono::milliseconds(static_cast<int64_t>(ttl_ms)));
    if (value != nullptr) *value = result;
  });
}

gv_status_code cache_compare_and_set(gv_host_plugin* self, gv_bytes key, bool expected_present,
                                     gv_bytes expected, bool value_present, gv_bytes value, uint64_t ttl_ms,
                                     bool* swapped, gv_message_buffer error) {
  return guarded(self, error, "cache", [&] {
    const std::string backend_key = cache_key(self, key);
    if (expected_present) check_size(self, "the expected value", expected);
    if (value_present) check_size(self, "the value", value);
    const bool done = self->platform->cache->compare_and_set(
        backend_key, expected_present ? std::optional<std::string>(as_string(expected)) : std::nullopt,
        value_present ? std::optional<std::string>(as_string(value)) : std::nullopt,
        std::chrono::milliseconds(static_cast<int64_t>(ttl_ms)));
    if (swapped != nullptr) *swapped = done;
  });
}

platform::PubSub& bus(gv_host_plugin* self) {
  if (self->platform == nullptr || self->platform->pubsub == nullptr)
    throw platform::PlatformError(GV_STATUS_UNAVAILABLE, "this host has no pub/sub configured");
  return *self->platform->pubsub;
}

gv_status_code publish(gv_host_plugin* self, gv_bytes topic, gv_bytes payload, gv_message_buffer error) {
  return guarded(self, error, "publish", [&] {
    platform::PubSub& pubsub = bus(self);
    check_size(self, "the message", payload);
    pubsub.publish(as_string(topic), as_string(payload));
  });
}

gv_status_code subscribe2(gv_host_plugin* self, gv_bytes topic, uint32_t flags, gv_message_fn fn,
                          void* context, uint64_t* out_subscription_id, gv_message_buffer error) {
  return guarded(self, error, "subscribe", [&] {
    if (fn == nullptr) throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT, "no subscriber callback");
    if (flags & ~static_cast<uint32_t>(GV_RUN_BLOCKING))
      throw platform::PlatformError(GV_STATUS_INVALID_ARGUMENT,
                                    "unknown subscription flags " + std::to_string(flags));
    platform::PubSub::Handler handler = [fn, context](const std::string& t, const std::string& p) {
      fn(context, as_bytes(t), as_bytes(p));
    };
    uint64_t serial = 0;
    if (flags & GV_RUN_BLOCKING) {
      platform::WorkPool& blocking = pool(self);
      serial = next_serial();
      // In order, one at a time, on the plugin's share of the pool; a full queue drops the
      // message (pub/sub is at most once) and the pool counts it.
      handler = [&blocking, self, serial, fn, context](const std::string& t, const std::string& p) {
        blocking.submit(self, self->name, serial, [fn, context, t, p](gv_status_code status) {
          if (status == GV_STATUS_OK) fn(context, as_bytes(t), as_bytes(p));
        });
      };
    }
    std::lock_guard lock(self->blocking_mu);
    const uint64_t id = bus(self).subscribe(self, as_string(topic), std::move(handler));
    if (serial != 0) self->blocking_subscriptions.emplace(id, serial);
    if (out_subscription_id != nullptr) *out_subscription_id = id;
  });
}

uint64_t subscribe(gv_host_plugin* self, gv_bytes topic, gv_message_fn fn, void* context,
                   gv_message_buffer error) {
  uint64_t id = 0;
  subscribe2(self, topic, 0, fn, context, &id, error);
  return id;
}

void unsubscribe(gv_host_plugin* self, uint64_t subscription_id) {
  if (self->platform == nullptr || self->platform->pubsub == nullptr) return;
  self->platform->pubsub->unsubscribe(subscription_id);
  if (const uint64_t serial = take_serial(self, self->blocking_subscriptions, subscription_id); serial != 0)
    self->platform->blocking->cancel_serial(self, serial);
}

}  // namespace

gv_host_api host_api(uint32_t minor) {
  gv_host_api api{};
  api.struct_size = sizeof api;
  api.abi_major = GV_ABI_VERSION_MAJOR;
  api.abi_minor = minor;
  api.log = &log;
  api.log_enabled = &log_enabled;
  api.config_string = &config_string;
  api.config_int = &config_scalar<int64_t>;
  api.config_double = &config_scalar<double>;
  api.config_bool = &config_scalar<bool>;
  api.call_send = &call_send;
  api.call_finish = &call_finish;
  api.call_deadline = &call_deadline;
  api.call_is_cancelled = &call_is_cancelled;
  api.call_metadata = &call_metadata;
  api.call_principal = &call_principal;
  api.call_method = &call_method;
  api.call_peer = &call_peer;
  api.store_get = &Measured<kStore, kGet, &store_get>::call;
  api.store_write = &Measured<kStore, kWrite, &store_write>::call;
  api.store_list = &Measured<kStore, kList, &store_list>::call;
  api.timer_start = &timer_start;
  api.timer_cancel = &timer_cancel;
  api.metric_register = &metric_register;
  api.metric_record = &metric_record;
  api.call_unary = &call_unary;
  api.cache_get = &Measured<kCache, kGet, &cache_get>::call;
  api.cache_set = &Measured<kCache, kSet, &cache_set>::call;
  api.cache_delete = &Measured<kCache, kDelete, &cache_delete>::call;
  api.cache_increment = &Measured<kCache, kIncrement, &cache_increment>::call;
  api.publish = &Measured<kPubSub, kPublish, &publish>::call;
  api.subscribe = &subscribe;
  api.unsubscribe = &unsubscribe;
  api.timer_start2 = &timer_start2;
  api.run_blocking = &run_blocking;
  api.timer_start3 = &timer_start3;
  api.subscribe2 = &subscribe2;
  api.metric_register2 = &metric_register2;
  api.call_origin = &call_origin;
  api.cache_compare_and_set = &Measured<kCache, kCompareAndSet, &cache_compare_and_set>::call;
  return api;
}

}  // namespace gameverse::plugin
