// gameverse/sdk/call.hpp — one call as a handler sees it: its context (caller, deadline,
// metadata), and the reply side of asynchronous and streaming calls.
#pragma once

#include <gameverse/abi.h>

#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gameverse/sdk/detail/abi.hpp"
#include "gameverse/sdk/status.hpp"

namespace gameverse::sdk {

struct Principal {
  std::string user_id;
  std::string session_id;
  std::vector<std::string> roles;
  bool anonymous() const { return user_id.empty(); }
};

namespace detail {
// "ipv4:127.0.0.1:53211" -> "ipv4:127.0.0.1", "ipv6:[::1]:8" -> "ipv6:[::1]"; a peer that does not
// end in a port number is returned whole.
inline std::string_view without_port(std::string_view peer) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == peer.size()) return peer;
  for (char c : peer.substr(colon + 1)) {
    if (c < '0' || c > '9') return peer;
  }
  return peer.substr(0, colon);
}
// "inproc:inventory" -> "inventory"; a network peer ("ipv4:...", "unix:...") -> empty.
inline std::string_view plugin_of_peer(std::string_view peer) {
  constexpr std::string_view kInProcess = "inproc:";
  return peer.starts_with(kInProcess) ? peer.substr(kInProcess.size()) : std::string_view();
}
}  // namespace detail

// Read access to one call, valid while the handler that received it runs. While it lives it is
// its thread's current call: Host::call made from the handler acts for that caller by default.
class CallContext {
 public:
  explicit CallContext(gv_call* call) : call_(call), outer_(current_slot()) { current_slot() = this; }
  ~CallContext() { current_slot() = outer_; }
  CallContext(const CallContext&) = delete;
  CallContext& operator=(const CallContext&) = delete;

  // The call whose handler runs on this thread; null outside handlers (timers, subscriptions,
  // callbacks that run after the handler returned).
  static const CallContext* current() { return current_slot(); }

  std::chrono::system_clock::time_point deadline() const {
    return to_time_point(detail::host_api()->call_deadline(call_));
  }
  bool cancelled() const { return detail::host_api()->call_is_cancelled(call_); }
  std::string_view method() const { return detail::view(detail::host_api()->call_method(call_)); }
  // The client's address, "ipv4:127.0.0.1:53211".
  std::string_view peer() const { return detail::view(detail::host_api()->call_peer(call_)); }
  // The same without its port, "ipv4:127.0.0.1" or "ipv6:[::1]": the key for a per-client limit.
  // A peer with no port ("inproc:echo") is returned whole.
  std::string_view peer_address() const { return detail::without_port(peer()); }
  // The plugin that made this call in process, or empty for a call from the network. It acted for
  // principal(), who met this method's access policy, unless plugin_with_own_trust() names it.
  std::string_view calling_plugin() const { return detail::plugin_of_peer(peer()); }
  // The plugin that made this call with its own trust (Host::call with sdk::as_plugin): the access
  // policy was not applied and there is no principal. Empty for a call from the network and for
  // one a plugin made for its caller, also when that caller is anonymous. What a service lets
  // only trusted plugins do is checked against this, never against an empty principal alone.
  std::string_view plugin_with_own_trust() const {
    const gv_host_api* api = detail::host_api();
    if (api->abi_minor >= 3) {
      return api->call_origin(call_) == GV_CALL_ORIGIN_PLUGIN ? calling_plugin() : std::string_view();
    }
    // A 1.2 host cannot say; there an anonymous in-process call is taken for the plugin's own.
    return principal().anonymous() ? calling_plugin() : std::string_view();
  }

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

  // The host that forwarded this call from another host of the cluster (its address, as it signed
  // it), or empty for a call made on this host. peer() of a forwarded call is the original caller's
  // there, so that per-address limits count a client the same on every host; a check that trusts
  // the connection itself (a loopback address) must also find this empty. A host too old to forward
  // calls says nothing here.
  std::string_view forwarded_by() const {
    gv_bytes value{};
    if (detail::host_api()->call_metadata(call_, "gameverse-forwarded-by", &value, 1) == 0) return {};
    return detail::view(value);
  }

  // The call's request id (metadata "x-request-id"): the client's own when it sent a sane one,
  // else one the host made; a call made from another plugin's handler carries that handler's.
  // The host already puts it on every log line written during the call; pass it on to systems
  // outside the host to tie their records to this call. Empty on a host without request ids.
  std::string_view request_id() const {
    gv_bytes value{};
    if (detail::host_api()->call_metadata(call_, "x-request-id", &value, 1) == 0) return {};
    return detail::view(value);
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
  // A pointer: no destructor, so it never pins the plugin's library to a thread (see detail/abi.hpp).
  static const CallContext*& current_slot() {
    static thread_local const CallContext* slot = nullptr;
    return slot;
  }

  gv_call* call_;
  const CallContext* outer_;
};

// The host's document store, for the collections the plugin declared (PluginBuilder::collection).
// Failures throw Error with the host's status and message; thrown from a handler, they become

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

  // The call's last handle (ServerStream, UnaryResponder) was dropped unfinished. While its
  // handler is still being started this only notes `status`: a handler that throws drops the
  // handle it was given before its error is caught, and the error must end the call, not the drop.
  void finish_dropped(const Status& status) {
    {
      std::lock_guard lock(mu_);
      if (starting_) {
        if (!dropped_) dropped_ = status;
        return;
      }
    }
    finish(status);
  }

  // Brackets a handler's start (see finish_dropped): its error ends the call if it threw, else
  // a drop noted meanwhile does.
  void begin_start() {
    std::lock_guard lock(mu_);
    starting_ = true;
  }
  void end_start(const std::optional<Status>& failure) {
    std::optional<Status> dropped;
    {
      std::lock_guard lock(mu_);
      starting_ = false;
      dropped.swap(dropped_);
    }
    if (failure) {
      finish(*failure);
    } else if (dropped) {
      finish(*dropped);
    }
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

  // Host hook: the client cancelled. Callbacks run, then the call is finished for the plugin,
  // unless blocking work owns it: that work finishes it (the host skips it when it has not
  // started), so the call stays valid while a blocking handler runs.
  void cancel() {
    std::vector<std::function<void()>> callbacks;
    bool finish_now = true;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      callbacks.swap(cancel_callbacks_);
      finish_now = !owned_by_blocking_work_;
    }
    for (auto& callback : callbacks) callback();
    if (inbound_) inbound_->cancel();
    if (finish_now) finish(Status(StatusCode::kCancelled, "the client cancelled the call"));
  }

  // Blocking work (run_blocking) answers the call: cancel() leaves finishing it to that work.
  void give_to_blocking_work() {
    std::lock_guard lock(mu_);
    owned_by_blocking_work_ = true;
  }

  gv_call* handle() const { return call_; }

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
  bool owned_by_blocking_work_ = false;
  bool starting_ = false;
  std::optional<Status> dropped_;  // how a handle dropped while starting would have ended the call
  std::vector<std::function<void()>> cancel_callbacks_;
};

inline void finish_call(gv_call* call, const Status& status) {
  host_api()->call_finish(call, static_cast<gv_status_code>(status.code()), status.message().data(),
                          status.message().size());
}

template <class Message>
Status parse_error(const Message& message) {
  return {StatusCode::kInvalidArgument, "request does not parse as " + message.GetTypeName()};
}

// Ends the stream with OK when the last copy of a ServerStream handle is dropped unfinished.
struct StreamOwner {
  explicit StreamOwner(std::shared_ptr<CallState> s) : state(std::move(s)) {}
  ~StreamOwner() { state->finish_dropped(Status::ok()); }
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
    if (state_)
      state_->finish_dropped(Status(StatusCode::kInternal, "the handler dropped the call unanswered"));
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
// ServiceBuilder::server_stream_movable). The plugin keeps producing through its ServerStream.
class StreamSession {
 public:
  virtual ~StreamSession() = default;
  // Stop producing (no write may follow once this returns) and return what the next generation's
  // resume function needs to continue without a gap or a repeat.
  virtual std::string detach() = 0;
  // The client cancelled; the SDK finishes the call with CANCELLED after this returns.
  virtual void on_cancel() {}
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

}  // namespace detail
}  // namespace gameverse::sdk
