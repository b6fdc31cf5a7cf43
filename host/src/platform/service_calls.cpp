#include "platform/service_calls.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>

#include "logging/context.hpp"
#include "logging/request_id.hpp"
#include "platform/remote_calls.hpp"
#include "platform/store.hpp"
#include "platform/timers.hpp"
#include "plugin/call.hpp"
#include "plugin/manager.hpp"

namespace gameverse::platform {

namespace {

gv_bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// One in-process call. It lives until the target plugin has finished it (or the deadline or a
// drain ended it) and its start hook has returned; then the plugin releases it.
class InProcessCall final : public gv_call,
                            public plugin::LiveCall,
                            public std::enable_shared_from_this<InProcessCall> {
 public:
  using Done = std::function<void(gv_status_code code, gv_bytes message, gv_bytes reply)>;

  InProcessCall(const Platform& platform, CallOrigin origin, std::string method, std::string request,
                Done done)
      : platform_(platform),
        origin_(std::move(origin)),
        method_(std::move(method)),
        request_(std::move(request)),
        done_(std::move(done)) {}

  void run() {
    const auto routes = platform_.routes ? platform_.routes() : nullptr;
    auto it = routes ? routes->find(method_) : decltype(routes->find(method_)){};
    if (!routes || it == routes->end()) {
      return fail_and_delete(GV_STATUS_UNIMPLEMENTED,
                             "method " + method_ + " is not served by any loaded plugin");
    }
    if (it->second.kind != GV_CALL_UNARY) {
      return fail_and_delete(GV_STATUS_UNIMPLEMENTED,
                             "method " + method_ + " is not unary; calls between plugins are");
    }
    // A call made for a caller (with a parent) meets the target's access policy as that caller;
    // a plugin's own calls (no parent: timers, start-up) act with the plugin's trust.
    if (origin_kind_ != GV_CALL_ORIGIN_PLUGIN) {
      if (it->second.access.kind != config::AccessPolicy::Kind::kPublic) identify();
      if (auto refusal =
              it->second.access.refusal(method_, origin_.user_id.empty() ? nullptr : &origin_.roles)) {
        return refusal->kind == config::AccessRefusal::Kind::kUnauthenticated
                   ? fail_and_delete(GV_STATUS_UNAUTHENTICATED,
                                     refusal->message + ", and the call it is made for has none")
                   : fail_and_delete(GV_STATUS_PERMISSION_DENIED, refusal->message);
      }
    }
    route_ = it->second;
    log_context_ = {origin_.request_id, route_.plugin->name(), route_.plugin->generation()};
    if (origin_.deadline_unix_ms != INT64_MAX) {
      if (origin_.deadline_unix_ms <= now_unix_ms()) {
        return fail_and_delete(GV_STATUS_DEADLINE_EXCEEDED,
                               "the deadline passed before " + method_ + " was called");
      }
      // The timer holds the call weakly: a call released meanwhile is simply gone.
      timer_ = platform_.timers->start(
          this, std::chrono::milliseconds(origin_.deadline_unix_ms - now_unix_ms()),
          std::chrono::milliseconds(0), [weak = weak_from_this()] {
            if (auto call = weak.lock()) {
              call->end_early(GV_STATUS_DEADLINE_EXCEEDED, "deadline exceeded calling " + call->method_);
            }
          });
    }
    route_.plugin->register_call(this);
    const gv_plugin_descriptor& d = route_.plugin->descriptor();
    {
      const logging::CallLogScope log_scope(&log_context_);
      d.on_call_start(route_.plugin->instance(), this, route_.method_index, as_bytes(request_), &call_state_);
    }
    maybe_release(/*start_returned=*/true);
  }

  // gv_call
  gv_status_code send(const uint8_t* data, size_t size) override {
    std::lock_guard lock(mu_);
    if (plugin_finished_ || reply_set_) return GV_STATUS_FAILED_PRECONDITION;
    reply_.assign(reinterpret_cast<const char*>(data), size);
    reply_set_ = true;
    return GV_STATUS_OK;
  }

  gv_status_code finish(gv_status_code code, std::string_view message) override {
    {
      std::lock_guard lock(mu_);
      if (plugin_finished_) return GV_STATUS_FAILED_PRECONDITION;
      plugin_finished_ = true;
    }
    if (code == GV_STATUS_OK && !reply_set_) {
      complete(GV_STATUS_INTERNAL, "the handler of " + method_ + " finished without a response");
    } else {
      complete(code, std::string(message));
    }
    maybe_release(/*start_returned=*/false);
    return GV_STATUS_OK;
  }

  int64_t deadline_unix_ms() const override { return origin_.deadline_unix_ms; }
  // True once the host ended the call (deadline or drain): as for calls from the network, the
  // plugin learns of it with the cancel hook, not before.
  bool is_cancelled() const override { return ended_early_; }
  // The request id in force (the caller's, carried over), and what the origin sent: a gateway
  // client's headers; nothing for calls between plugins.
  size_t metadata(const char* key, gv_bytes* values, size_t max_values) const override {
    if (key == nullptr) return 0;
    if (logging::is_request_id_key(key)) {
      if (max_values > 0) values[0] = as_bytes(origin_.request_id);
      return 1;
    }
    size_t count = 0;
    for (const auto& [name, value] : origin_.metadata) {
      if (name != key) continue;
      if (count < max_values) values[count] = as_bytes(value);
      ++count;
    }
    return count;
  }
  void principal(gv_principal* out) const override {
    identify();
    const size_t size = out->struct_size;
    gv_principal p{};
    p.struct_size = size;
    p.user_id = as_bytes(origin_.user_id);
    p.session_id = as_bytes(origin_.session_id);
    p.roles = role_bytes_.data();
    p.role_count = role_bytes_.size();
    std::memcpy(out, &p, std::min(size, sizeof p));
  }
  gv_bytes method() const override { return as_bytes(method_); }
  gv_bytes peer() const override { return as_bytes(origin_.peer); }
  gv_call_origin origin() const override { return origin_kind_; }
  size_t request_bytes() const override { return request_.size(); }

  // The client went away (a gateway call): the call ends as cancelled, and the plugin is told.
  // On the timer thread, like deadlines and the releases a plugin's own finish posts: so the
  // cancel hook never runs beside the release hook.
  void cancel_by_client() {
    platform_.timers->start(nullptr, std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                            [weak = weak_from_this()] {
                              if (auto call = weak.lock())
                                call->end_early(GV_STATUS_CANCELLED, "the client cancelled the call");
                            });
  }

  // The caller, worked out on first use when the origin defers it (a public method's caller).
  void identify() const {
    std::call_once(identified_, [this] {
      if (origin_.identify) origin_.identify(origin_);
      role_bytes_.clear();
      for (const auto& role : origin_.roles) role_bytes_.push_back(as_bytes(role));
    });
  }

  // plugin::LiveCall: unary calls do not move; a drain deadline ends them.
  void request_move(std::shared_ptr<plugin::Plugin>, uint32_t) override {}
  void request_abort(std::string message) override { end_early(GV_STATUS_UNAVAILABLE, message); }
  gv_call_kind kind() const override { return GV_CALL_UNARY; }
  const std::string& method_name() const override { return method_; }

 private:
  void fail_and_delete(gv_status_code code, const std::string& message) {
    done_(code, as_bytes(message), gv_bytes{nullptr, 0});
    keep_alive_.reset();
  }

 public:
  std::shared_ptr<InProcessCall> keep_alive_;  // the call's own reference, dropped on release
  // Who made it: a plugin with its own trust, a plugin for its caller (a parent call), or a client
  // at the gateway; all but the first meet the target's access policy as their caller.
  gv_call_origin origin_kind_ = GV_CALL_ORIGIN_PLUGIN;

 private:
  // The caller learns the outcome once, whichever comes first: the plugin's finish, the deadline,
  // or the drain.
  void complete(gv_status_code code, const std::string& message) {
    if (completed_.exchange(true)) return;
    done_(code, as_bytes(message), code == GV_STATUS_OK ? as_bytes(reply_) : gv_bytes{nullptr, 0});
  }

  void end_early(gv_status_code code, const std::string& message) {
    ended_early_ = true;
    mark_ended();
    complete(code, message);
    // The plugin still owns the call until it finishes it; tell it to stop (outside the lock: its
    // cancel may finish the call at once).
    bool tell = false;
    {
      std::lock_guard lock(mu_);
      tell = !plugin_finished_ && start_returned_ && !cancel_told_;
      if (tell) cancel_told_ = true;  // a deadline and a client leaving at once: one cancel
    }
    if (tell && route_.plugin->descriptor().on_call_cancel != nullptr) {
      const logging::CallLogScope log_scope(&log_context_);
      route_.plugin->descriptor().on_call_cancel(route_.plugin->instance(), this, call_state_);
    }
  }

  // Releases the call once the plugin finished it and its start hook returned. From inside the
  // plugin's own finish the release is posted to the timer thread: the plugin may be holding
  // locks there that its release hook takes.
  void maybe_release(bool start_returned) {
    {
      std::lock_guard lock(mu_);
      if (start_returned) start_returned_ = true;
      if (!start_returned_ || !plugin_finished_ || released_) return;
      released_ = true;
    }
    if (timer_ != 0) platform_.timers->cancel_nowait(timer_);
    if (start_returned) {
      release();
    } else {
      platform_.timers->start(nullptr, std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                              [self = shared_from_this()] { self->release(); });
    }
  }

  void release() {
    mark_ended();
    const gv_plugin_descriptor& d = route_.plugin->descriptor();
    if (d.on_call_release != nullptr) {
      const logging::CallLogScope log_scope(&log_context_);
      d.on_call_release(route_.plugin->instance(), this, call_state_);
    }
    route_.plugin->unregister_call(this);
    keep_alive_.reset();
  }

  const Platform& platform_;
  mutable CallOrigin origin_;  // identify() completes it once
  mutable std::once_flag identified_;
  std::string method_;
  std::string request_;
  logging::CallLogContext log_context_;  // filled in once the target is known
  Done done_;
  mutable std::vector<gv_bytes> role_bytes_;
  plugin::Route route_{};
  void* call_state_ = nullptr;
  uint64_t timer_ = 0;
  std::atomic<bool> completed_{false};
  std::atomic<bool> ended_early_{false};
  std::mutex mu_;
  bool plugin_finished_ = false;
  bool start_returned_ = false;
  bool cancel_told_ = false;
  bool released_ = false;
  bool reply_set_ = false;
  std::string reply_;
};

// A chain of calls shares one request id: the parent's; without a parent, the one of the call
// this thread works for (a plugin's own call made from a handler); else a new one.
std::string request_id_for(const gv_call* parent) {
  if (parent != nullptr && !parent->request_id().empty()) return std::string(parent->request_id());
  if (const logging::CallLogContext* current = logging::current_call();
      current != nullptr && !current->request_id.empty()) {
    return std::string(current->request_id);
  }
  return std::string(logging::GeneratedRequestId::make().view());
}

// When no plugin here serves `method` and other hosts may: forwards the call there and returns
// true (with the cancel function in `cancel`). The caller is worked out first: it travels along.
bool forwarded(const Platform& platform, const std::string& method, std::string& request, CallOrigin& origin,
               gv_call_origin kind, std::shared_ptr<const std::atomic<bool>> parent_ended,
               RemoteCalls::Done& done, std::function<void()>* cancel, const void* owner) {
  if (platform.remote == nullptr) return false;
  if (const auto routes = platform.routes ? platform.routes() : nullptr; routes && routes->contains(method)) {
    return false;
  }
  if (service_of(method).empty()) return false;
  if (origin.identify) {
    origin.identify(origin);
    origin.identify = nullptr;
  }
  auto stop = platform.remote->forward(method, std::move(request), origin, kind, std::move(parent_ended),
                                       std::move(done), owner);
  if (cancel != nullptr) *cancel = std::move(stop);
  return true;
}

}  // namespace

void call_unary(const Platform& platform, const std::string& caller, gv_call* parent, std::string method,
                std::string request, uint64_t timeout_ms, gv_call_done_fn done, void* context,
                const void* owner) {
  CallOrigin origin;
  origin.peer = "inproc:" + caller;
  origin.deadline_unix_ms = parent != nullptr ? parent->deadline_unix_ms() : INT64_MAX;
  if (timeout_ms > 0)
    origin.deadline_unix_ms =
        std::min<int64_t>(origin.deadline_unix_ms, now_unix_ms() + static_cast<int64_t>(timeout_ms));
  if (parent != nullptr) {
    gv_principal principal{};
    principal.struct_size = sizeof principal;
    parent->principal(&principal);
    origin.user_id.assign(reinterpret_cast<const char*>(principal.user_id.data), principal.user_id.size);
    origin.session_id.assign(reinterpret_cast<const char*>(principal.session_id.data),
                             principal.session_id.size);
    for (size_t i = 0; i < principal.role_count; ++i) {
      origin.roles.emplace_back(reinterpret_cast<const char*>(principal.roles[i].data),
                                principal.roles[i].size);
    }
  }
  origin.request_id = request_id_for(parent);
  const gv_call_origin kind = parent != nullptr ? GV_CALL_ORIGIN_FOR_CALLER : GV_CALL_ORIGIN_PLUGIN;
  if (platform.remote != nullptr) {
    RemoteCalls::Done remote_done = [done, context](gv_status_code code, std::string_view message,
                                                    std::string_view reply) {
      done(context, code, {reinterpret_cast<const uint8_t*>(message.data()), message.size()},
           {reinterpret_cast<const uint8_t*>(reply.data()), reply.size()});
    };
    if (forwarded(platform, method, request, origin, kind, parent != nullptr ? parent->ended_flag() : nullptr,
                  remote_done, nullptr, owner)) {
      return;
    }
  }
  auto call =
      std::make_shared<InProcessCall>(platform, std::move(origin), std::move(method), std::move(request),
                                      [done, context](gv_status_code code, gv_bytes message, gv_bytes reply) {
                                        done(context, code, message, reply);
                                      });
  call->origin_kind_ = kind;
  call->keep_alive_ = call;  // its own reference until released
  call->run();
}

std::function<void()> call_unary_for_client(const Platform& platform, CallOrigin origin, std::string method,
                                            std::string request, ClientCallDone done) {
  if (platform.remote != nullptr) {
    std::function<void()> cancel;
    RemoteCalls::Done remote_done = done;
    if (forwarded(platform, method, request, origin, GV_CALL_ORIGIN_NETWORK, nullptr, remote_done, &cancel,
                  nullptr)) {
      return cancel;
    }
  }
  auto call = std::make_shared<InProcessCall>(
      platform, std::move(origin), std::move(method), std::move(request),
      [done = std::move(done)](gv_status_code code, gv_bytes message, gv_bytes reply) {
        done(code, std::string_view(reinterpret_cast<const char*>(message.data), message.size),
             std::string_view(reinterpret_cast<const char*>(reply.data), reply.size));
      });
  // The policy is checked again against the route the call takes: a reload since the gateway's
  // check may have changed it.
  call->origin_kind_ = GV_CALL_ORIGIN_NETWORK;  // a client at the gateway, or the host as operator
  call->keep_alive_ = call;
  std::weak_ptr<InProcessCall> weak = call;
  call->run();
  return [weak] {
    if (auto live = weak.lock()) live->cancel_by_client();
  };
}

}  // namespace gameverse::platform
