// gameverse/sdk/host.hpp — the host as a plugin sees it: logging, config, the store and cache,
// pub/sub, timers, metrics, calls to other services and the pool for blocking work.
#pragma once

#include <gameverse/abi.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gameverse/sdk/call.hpp"
#include "gameverse/sdk/detail/abi.hpp"
#include "gameverse/sdk/status.hpp"
#include "gameverse/sdk/store.hpp"

namespace gameverse::sdk {

// Milliseconds since the Unix epoch by the system clock: the time stamps plugins store.
inline int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Where a timer or subscription callback runs.
enum class Run {
  // On the host's timer or delivery thread, shared by every plugin: keep it short, never block.
  kInline = 1,
  // On the host's pool for blocking work, within this plugin's share: it may use the store, the
  // cache and other services. A periodic timer never has two runs waiting; a subscription's
  // messages still arrive one at a time, in order.
  kBlocking = 2,
};

namespace detail {

// Logs what a callback without a caller (timer, subscription, blocking work) threw.
inline void log_current_exception(const gv_host_api* api, gv_host_plugin* self, std::string_view what) {
  const std::string message = std::string(what) + " threw: " + status_of_current_exception().message();
  api->log(self, GV_LOG_ERROR, message.data(), message.size());
}

// The host field that ends a timer or a subscription.
using CancelField = gv_host_timer_cancel_fn gv_host_api::*;

// A host-assigned id and the callback it calls (owned here); cancelled when dropped.
class CallbackHandle {
 public:
  CallbackHandle() = default;
  CallbackHandle(const gv_host_api* api, gv_host_plugin* self, uint64_t id, CancelField cancel,
                 std::shared_ptr<void> callback)
      : api_(api), self_(self), id_(id), cancel_(cancel), callback_(std::move(callback)) {}
  CallbackHandle(CallbackHandle&& other) noexcept { *this = std::move(other); }
  CallbackHandle& operator=(CallbackHandle&& other) noexcept {
    if (this != &other) {
      cancel();
      api_ = other.api_;
      self_ = other.self_;
      id_ = std::exchange(other.id_, 0);
      cancel_ = other.cancel_;
      callback_ = std::move(other.callback_);
    }
    return *this;
  }
  ~CallbackHandle() { cancel(); }
  void cancel() {
    if (id_ != 0) (api_->*cancel_)(self_, std::exchange(id_, 0));
  }
  bool active() const { return id_ != 0; }

 private:
  const gv_host_api* api_ = nullptr;
  gv_host_plugin* self_ = nullptr;
  uint64_t id_ = 0;
  CancelField cancel_ = nullptr;
  std::shared_ptr<void> callback_;
};

}  // namespace detail

// A timer (Host::start_timer). Cancelled when the handle is dropped, and by the host when the
// generation retires. cancel(): when it returns, the callback is not running and will not run again.
class Timer : public detail::CallbackHandle {
 public:
  using CallbackHandle::CallbackHandle;
};

// A subscription to a pub/sub topic (Host::subscribe). Ended when the handle is dropped, and by
// the host when the generation retires. cancel(): when it returns, the handler is not running.
class Subscription : public detail::CallbackHandle {
 public:
  using Handler = std::function<void(std::string_view topic, std::string_view payload)>;
  using CallbackHandle::CallbackHandle;
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
      labels[n++] = detail::bytes(v);
    }
    api_->metric_record(self_, id_, labels, n, value);
  }
  // The same with label values known only at run time; at most 16 are passed.
  void record_values(double value, const std::vector<std::string>& label_values) const {
    gv_bytes labels[16];
    size_t n = 0;
    for (const std::string& v : label_values) {
      if (n == 16) break;
      labels[n++] = detail::bytes(v);
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

// Tag for Host::call: call with the plugin's own trust instead of for a caller.
struct AsPlugin {
  explicit constexpr AsPlugin() = default;
};
inline constexpr AsPlugin as_plugin{};

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

  // Config values: declared keys always have a value that meets their rules (the host checked
  // it). Asking for an undeclared key or the wrong type throws Error(kFailedPrecondition).
  std::string config_string(const char* key) const {
    gv_bytes out{};
    check_config(api_->config_string(self_, key, &out), key, "string");
    return std::string(detail::view(out));
  }
  int64_t config_int(const char* key) const {
    int64_t out = 0;
    check_config(api_->config_int(self_, key, &out), key, "integer");
    return out;
  }
  double config_double(const char* key) const {
    double out = 0;
    check_config(api_->config_double(self_, key, &out), key, "float");
    return out;
  }
  bool config_bool(const char* key) const {
    bool out = false;
    check_config(api_->config_bool(self_, key, &out), key, "boolean");
    return out;
  }

  uint32_t abi_minor() const { return api_->abi_minor; }

  // The document store; keep the Host (or the Store) for use in handlers.
  Store store() const { return Store(api_, self_); }

  // The cache; needs a host with ABI 1.1.
  Cache cache() const {
    require_minor(1, "the cache");
    return Cache(api_, self_);
  }

  // Runs `work` on the host's pool for blocking work, within this plugin's share, and returns at
  // once. With `call`, the work is skipped when that call is cancelled or past its deadline before
  // the work starts. Throws Error(kResourceExhausted) when the plugin's queue is full. `work` must
  // not outlive what it captures: the host waits for running work before the generation shuts down
  // and drops work that has not started.
  void run_blocking(std::function<void()> work, const CallContext* call = nullptr) const {
    run_blocking_with_status(
        [work = std::move(work)](gv_status_code status) {
          if (status == GV_STATUS_OK) work();
        },
        call != nullptr ? call->handle() : nullptr);
  }

  // The same, told why when the work is not to be done (GV_STATUS_CANCELLED, _DEADLINE_EXCEEDED or
  // _UNAVAILABLE): exactly one call of `work`, whatever happens. On a host before ABI 1.2 the work
  // runs at once on the calling thread.
  void run_blocking_with_status(std::function<void(gv_status_code)> work, gv_call* call) const {
    if (api_->abi_minor < 2) {
      work(GV_STATUS_OK);
      return;
    }
    auto* owned = new std::function<void(gv_status_code)>(
        [work = std::move(work), api = api_, self = self_](gv_status_code status) {
          try {
            work(status);
          } catch (...) {
            detail::log_current_exception(api, self, "blocking work");
          }
        });
    detail::MessageBuffer message;
    const gv_status_code code = api_->run_blocking(
        self_, call,
        [](void* context, gv_status_code status) {
          std::unique_ptr<std::function<void(gv_status_code)>> job(
              static_cast<std::function<void(gv_status_code)>*>(context));
          (*job)(status);
        },
        owned, message.buffer());
    if (code != GV_STATUS_OK) {
      delete owned;
      detail::check(code, message);
    }
  }

  // Publishes to every subscriber of `topic`, on this host and, with Redis, on every host.
  void publish(std::string_view topic, std::string_view payload) const {
    require_minor(1, "pub/sub");
    detail::MessageBuffer message;
    detail::check(api_->publish(self_, detail::bytes(topic), detail::bytes(payload), message.buffer()),
                  message);
  }

  // Calls `handler` with every message published to `topic` from now on. Made in the constructor,
  // it takes over from the previous generation's subscription at a hot reload: every message
  // reaches one of the two.
  Subscription subscribe(std::string_view topic, Subscription::Handler handler,
                         Run run = Run::kInline) const {
    require_minor(1, "pub/sub");
    auto owned =
        std::make_shared<Subscription::Handler>([handler = std::move(handler), api = api_, self = self_](
                                                    std::string_view t, std::string_view payload) {
          try {
            handler(t, payload);
          } catch (...) {
            detail::log_current_exception(api, self, "subscription to " + std::string(t));
          }
        });
    const gv_message_fn fn = [](void* context, gv_bytes t, gv_bytes payload) {
      (*static_cast<Subscription::Handler*>(context))(detail::view(t), detail::view(payload));
    };
    detail::MessageBuffer message;
    uint64_t id = 0;
    if (api_->abi_minor >= 2) {
      detail::check(api_->subscribe2(self_, detail::bytes(topic), flags_of(run), fn, owned.get(), &id,
                                     message.buffer()),
                    message);
    } else {
      require_inline(run);
      id = api_->subscribe(self_, detail::bytes(topic), fn, owned.get(), message.buffer());
      if (id == 0) throw Error(StatusCode::kInvalidArgument, message.text);
    }
    return Subscription(api_, self_, id, &gv_host_api::unsubscribe, std::move(owned));
  }

  // Runs `callback` after `delay`, then every `period` (zero: once), keeping the rate:
  // std::chrono::nanoseconds(1'000'000'000 / 60) ticks at 60 Hz.
  Timer start_timer(std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                    std::function<void()> callback, Run run = Run::kInline) const {
    auto owned =
        std::make_shared<std::function<void()>>([callback = std::move(callback), api = api_, self = self_] {
          try {
            callback();
          } catch (...) {
            detail::log_current_exception(api, self, "timer");
          }
        });
    const gv_timer_fn fn = [](void* context) { (*static_cast<std::function<void()>*>(context))(); };
    detail::MessageBuffer message;
    uint64_t id = 0;
    const auto delay_ns = static_cast<uint64_t>(delay.count());
    const auto period_ns = static_cast<uint64_t>(period.count());
    if (api_->abi_minor >= 2) {
      detail::check(api_->timer_start3(self_, delay_ns, period_ns, flags_of(run), fn, owned.get(), &id,
                                       message.buffer()),
                    message);
    } else {
      require_inline(run);
      id = api_->abi_minor >= 1
               ? api_->timer_start2(self_, delay_ns, period_ns, fn, owned.get(), message.buffer())
               : api_->timer_start(self_, delay_ns / 1000000, period_ns / 1000000, fn, owned.get(),
                                   message.buffer());
      if (id == 0) throw Error(StatusCode::kFailedPrecondition, message.text);
    }
    return Timer(api_, self_, id, &gv_host_api::timer_cancel, std::move(owned));
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

  // Calls a unary method of another service in process and waits for its answer: from a blocking
  // handler, timer or subscription (or Host::run_blocking), never from a hook on a host thread.
  // The call acts for a caller, who meets the target's access policy and whose deadline carries
  // over: by default the caller of the handler running on this thread; `caller` names one (for
  // work that outlives its handler). `sdk::as_plugin` calls with this plugin's own trust, past the
  // target's policy: for the plugin's own work, never on a caller's behalf. Outside a handler the
  // default has no caller and the call fails (kFailedPrecondition) rather than guess.
  // A blocking method of this same plugin needs a thread of its share, which the waiting callers
  // may hold: give it a timeout.
  CallResult call(std::string_view method, std::string_view request,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    return wait_for(method, request, Parent::current(), timeout);
  }
  CallResult call(std::string_view method, std::string_view request, const CallContext& caller,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    return wait_for(method, request, Parent{&caller, false}, timeout);
  }
  CallResult call(std::string_view method, std::string_view request, AsPlugin,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    return wait_for(method, request, Parent{nullptr, true}, timeout);
  }

  // Typed: serializes the request, parses the response; failures throw Error with the status.
  template <class Response, class Request>
  Response call(std::string_view method, const Request& request,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    return typed<Response>(method, request, Parent::current(), timeout);
  }
  template <class Response, class Request>
  Response call(std::string_view method, const Request& request, const CallContext& caller,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    return typed<Response>(method, request, Parent{&caller, false}, timeout);
  }
  template <class Response, class Request>
  Response call(std::string_view method, const Request& request, AsPlugin,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const {
    return typed<Response>(method, request, Parent{nullptr, true}, timeout);
  }

  // Calls and returns at once; `done` runs once with the outcome, on some thread. The caller is
  // chosen as for `call`.
  void call_async(std::string_view method, std::string_view request, std::chrono::milliseconds timeout,
                  std::function<void(CallResult)> done) const {
    start(method, request, Parent::current(), timeout, std::move(done));
  }
  void call_async(std::string_view method, std::string_view request, const CallContext& caller,
                  std::chrono::milliseconds timeout, std::function<void(CallResult)> done) const {
    start(method, request, Parent{&caller, false}, timeout, std::move(done));
  }
  void call_async(std::string_view method, std::string_view request, AsPlugin,
                  std::chrono::milliseconds timeout, std::function<void(CallResult)> done) const {
    start(method, request, Parent{nullptr, true}, timeout, std::move(done));
  }

  const gv_host_api* api() const { return api_; }
  gv_host_plugin* self() const { return self_; }

 private:
  // Whom a call between services acts for: a caller's call, or (as_plugin) the plugin itself.
  struct Parent {
    const CallContext* caller;
    bool as_plugin;
    static Parent current() { return {CallContext::current(), false}; }
  };

  CallResult wait_for(std::string_view method, std::string_view request, Parent parent,
                      std::chrono::milliseconds timeout) const {
    struct Waiter {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      CallResult result;
    } waiter;
    start(method, request, parent, timeout, [&waiter](CallResult result) {
      std::lock_guard lock(waiter.mu);
      waiter.result = std::move(result);
      waiter.done = true;
      waiter.cv.notify_all();
    });
    std::unique_lock lock(waiter.mu);
    waiter.cv.wait(lock, [&] { return waiter.done; });
    return std::move(waiter.result);
  }

  template <class Response, class Request>
  Response typed(std::string_view method, const Request& request, Parent parent,
                 std::chrono::milliseconds timeout) const {
    CallResult result = wait_for(method, request.SerializeAsString(), parent, timeout);
    if (!result.status.is_ok()) throw Error(result.status);
    Response response;
    if (!detail::parse(std::string_view(result.response), response)) {
      throw Error(StatusCode::kInternal,
                  std::string(method) + " answered with bytes that are not a " + response.GetTypeName());
    }
    return response;
  }

  void start(std::string_view method, std::string_view request, Parent parent,
             std::chrono::milliseconds timeout, std::function<void(CallResult)> done) const {
    if (parent.caller == nullptr && !parent.as_plugin) {
      done(CallResult{Status(StatusCode::kFailedPrecondition,
                             "calling " + std::string(method) +
                                 " outside a handler: pass the CallContext of the call it is made for, or "
                                 "sdk::as_plugin to call with this plugin's own trust"),
                      {}});
      return;
    }
    auto* context = new std::function<void(CallResult)>(std::move(done));
    api_->call_unary(
        self_, parent.caller != nullptr ? parent.caller->handle() : nullptr, detail::bytes(method),
        detail::bytes(request), static_cast<uint64_t>(timeout.count()),
        [](void* ctx, gv_status_code code, gv_bytes message, gv_bytes response) {
          std::unique_ptr<std::function<void(CallResult)>> callback(
              static_cast<std::function<void(CallResult)>*>(ctx));
          (*callback)(CallResult{Status(static_cast<StatusCode>(code), std::string(detail::view(message))),
                                 std::string(detail::view(response))});
        },
        context);
  }

  static uint32_t flags_of(Run run) {
    return run == Run::kBlocking ? static_cast<uint32_t>(GV_RUN_BLOCKING) : 0u;
  }

  void require_inline(Run run) const {
    if (run == Run::kBlocking) {
      throw Error(StatusCode::kFailedPrecondition,
                  "Run::kBlocking needs a host with ABI 1.2 or newer; this host "
                  "speaks ABI 1." +
                      std::to_string(api_->abi_minor));
    }
  }

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
    detail::MessageBuffer message;
    uint64_t id = 0;
    if (api_->abi_minor >= 2) {
      detail::check(api_->metric_register2(self_, &desc, &id, message.buffer()), message);
    } else {
      id = api_->metric_register(self_, &desc, message.buffer());
      if (id == 0) throw Error(StatusCode::kInvalidArgument, message.text);
    }
    return Metric(api_, self_, id);
  }

  void require_minor(uint32_t minor, const char* what) const { detail::require_minor(api_, minor, what); }

  static void check_config(bool found, const char* key, const char* type) {
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

}  // namespace gameverse::sdk
