#include "rpc/server.hpp"

#include <grpc/grpc.h>
#include <grpcpp/alarm.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <list>
#include <mutex>
#include <optional>

#include "logging/context.hpp"
#include "logging/request_id.hpp"
#include "platform/cpu_budget.hpp"
#include "platform/remote_calls.hpp"
#include "plugin/call.hpp"
#include "rpc/gate.hpp"
#include "rpc/health.hpp"
#include "rpc/tls.hpp"

namespace gameverse::rpc {

namespace {

// Slots waiting for a new call, per completion queue and method: few at first, doubling up to the
// maximum whenever a method has as many calls active as slots, so a busy method soon has enough
// that new calls do not queue inside gRPC for a slot (a locked queue, slower than a waiting slot),
// and an idle one costs little. Every posted slot is a tag on the queue, and
// Debian's gRPC (built with assertions) scans the queue's list of tags on every completion.
constexpr int kInitialSlotsPerMethod = 1;
constexpr int kInitialGenericSlots = 4;
constexpr int kMaxSlotsPerUnaryMethod = 32;
constexpr int kMaxGenericSlots = 64;

bool single_response(gv_call_kind kind) {
  return kind == GV_CALL_UNARY || kind == GV_CALL_CLIENT_STREAMING;
}

bool single_request(gv_call_kind kind) {
  return kind == GV_CALL_UNARY || kind == GV_CALL_SERVER_STREAMING;
}

int64_t unix_ms(std::chrono::system_clock::time_point t) {
  if (t == std::chrono::system_clock::time_point::max()) return INT64_MAX;
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

grpc::Status to_grpc(gv_status_code code, std::string_view message) {
  if (code == GV_STATUS_OK) return grpc::Status::OK;
  if (code < GV_STATUS_OK || code > GV_STATUS_UNAUTHENTICATED) {
    return {grpc::StatusCode::UNKNOWN,
            "plugin finished with invalid status code " + std::to_string(code) + ": " + std::string(message)};
  }
  return {static_cast<grpc::StatusCode>(code), std::string(message)};
}

// What a completion-queue tag points at.
class CompletionHandler {
 public:
  enum class Op : uint8_t { kRequest, kRead, kWrite, kFinish, kDone, kControl, kInitialMetadata };
  struct Tag {
    CompletionHandler* call;
    Op op;
  };
  virtual void on_completion(Op op, bool ok) = 0;

 protected:
  ~CompletionHandler() = default;
};

}  // namespace

// How a call reaches the server. Two ways, one call implementation (ServerCall<Transport>):
// - GenericTransport: any method, through the AsyncGenericService; the request is read with a
//   separate Read, and all four call kinds work.
// - UnaryTransport: a unary method registered by name before the server started; gRPC hands the
//   request over with the call itself, which saves a round through the completion queue
//   (measured: about 8% of throughput at 100 bytes).
struct GenericTransport {
  grpc::GenericServerContext context;
  grpc::GenericServerAsyncReaderWriter stream{&context};

  static constexpr bool kRequestComesWithCall = false;
  void request(Server& server, grpc::ServerCompletionQueue* queue, grpc::ByteBuffer*, void* tag) {
    server.generic_.RequestCall(&context, &stream, queue, queue, tag);
  }
  static size_t slot(const Server& server) { return server.generic_slot(); }
  const std::string& method() const { return context.method(); }
  void send_initial_metadata(void* tag) { stream.SendInitialMetadata(tag); }
  void read(grpc::ByteBuffer* buffer, void* tag) { stream.Read(buffer, tag); }
  void write(const grpc::ByteBuffer& buffer, void* tag) { stream.Write(buffer, tag); }
  void finish(const grpc::Status& status, void* tag) { stream.Finish(status, tag); }
  void write_and_finish(const grpc::Slice& reply, const grpc::Status& status, void* tag) {
    stream.WriteAndFinish(grpc::ByteBuffer(&reply, 1), grpc::WriteOptions(), status, tag);
  }
};

struct UnaryTransport {
  explicit UnaryTransport(int method_index) : index(method_index) {}
  int index;
  grpc::ServerContext context;
  grpc::ServerAsyncResponseWriter<UnaryReply> responder{&context};
  const std::string* method_name = nullptr;

  static constexpr bool kRequestComesWithCall = true;
  void request(Server& server, grpc::ServerCompletionQueue* queue, grpc::ByteBuffer* request, void* tag) {
    method_name = &server.unary_methods_->name(index);
    server.unary_methods_->request(index, &context, request, &responder, queue, tag);
  }
  size_t slot(const Server&) const { return static_cast<size_t>(index); }
  const std::string& method() const { return *method_name; }
  void send_initial_metadata(void* tag) { responder.SendInitialMetadata(tag); }
  void read(grpc::ByteBuffer*, void*) {}  // never called: the kind is unary
  void write(const grpc::ByteBuffer&, void*) {}
  void finish(const grpc::Status& status, void* tag) {
    if (status.ok()) {
      const grpc::Slice empty;
      responder.Finish(UnaryReply{&empty}, status, tag);  // unreachable: OK always has a reply
    } else {
      responder.FinishWithError(status, tag);
    }
  }
  void write_and_finish(const grpc::Slice& reply, const grpc::Status& status, void* tag) {
    responder.Finish(UnaryReply{&reply}, status, tag);
  }
};

// One RPC. All completions of a call arrive on the one thread of its completion queue, so plugin
// hooks for a call never run concurrently; the plugin's send and finish may come from any thread
// and meet the completion thread under mu_. Hot reload asks for a move or an abort from the
// manager's thread; the request is carried out on the completion thread through an alarm. The
// call deletes itself on its completion thread once no operation is outstanding and the plugin
// has finished it.
template <class Transport>
class ServerCall final : public gv_call, public CompletionHandler, public plugin::LiveCall {
 public:
  template <class... Args>
  ServerCall(Server& server, Server::Queue& queue, Args&&... transport_args)
      : server_(server), queue_(queue), transport_(std::forward<Args>(transport_args)...) {
    transport_.context.AsyncNotifyWhenDone(&done_tag_);
    transport_.request(server_, queue_.cq.get(), &read_buffer_, &request_tag_);
  }

  // Every completion but the request's ends one pending operation; the request's starts the done
  // tag's. The count is settled in maybe_delete, under the lock it takes anyway.
  void on_completion(Op op, bool ok) override {
    // Every plugin hook and host line of the call runs in here: they log with its request id.
    const logging::CallLogScope log_scope(&log_context_);
    int ops_delta = -1;
    switch (op) {
      case Op::kRequest:
        if (!ok) {  // the server is shutting down; the done tag never fires for an unstarted call
          Server& server = server_;
          delete this;
          server.call_ended();
          return;
        }
        ops_delta = 1;
        on_request();
        break;
      case Op::kRead: on_read(ok); break;
      case Op::kWrite: on_write(ok); break;
      case Op::kFinish: break;
      case Op::kInitialMetadata: break;
      case Op::kDone: on_done(); break;
      case Op::kControl: on_control(); break;
    }
    maybe_delete(ops_delta);
  }

  // gv_call, through the handle the call started with.
  gv_status_code send(const uint8_t* data, size_t size) override { return send_via(this, data, size); }
  gv_status_code finish(gv_status_code code, std::string_view message) override {
    return finish_via(this, code, message);
  }
  int64_t deadline_unix_ms() const override { return deadline_unix_ms_; }
  bool is_cancelled() const override { return cancelled_; }

  size_t metadata(const char* key, gv_bytes* values, size_t max_values) const override {
    // The gateway's and the cluster's keys stay with the host: a plugin that logs metadata must
    // not leak them; what a forwarding host said of the caller reaches plugins as the principal.
    if (key != nullptr && std::string_view(key) == platform::kForwardedByKey) {
      // The host that forwarded the call, as it signed it; nothing for any other call.
      if (forwarded_origin_ == 0) return 0;
      if (max_values > 0)
        values[0] = {reinterpret_cast<const uint8_t*>(forwarded_by_.data()), forwarded_by_.size()};
      return 1;
    }
    if (key == nullptr || std::string_view(key) == kForwardingKeyKey ||
        std::string_view(key).starts_with(platform::kClusterPrefix) ||
        std::string_view(key).starts_with(platform::kForwardedPrefix)) {
      return 0;
    }
    if (logging::is_request_id_key(key)) {  // the id in force, which may not be the client's
      if (max_values > 0)
        values[0] = {reinterpret_cast<const uint8_t*>(request_id_.data()), request_id_.size()};
      return 1;
    }
    auto [begin, end] = transport_.context.client_metadata().equal_range(grpc::string_ref(key));
    size_t count = 0;
    for (auto it = begin; it != end; ++it, ++count) {
      if (count < max_values) {
        values[count] = {reinterpret_cast<const uint8_t*>(it->second.data()), it->second.size()};
      }
    }
    return count;
  }

  void principal(gv_principal* out) const override {
    // What the gate established; anonymous (every field empty) for a public call without a token.
    std::call_once(caller_known_, [&] {
      if (server_.gate_ != nullptr)
        caller_ = server_.gate_->check(transport_.method(), route_.access, authorization()).caller;
    });
    const size_t size = out->struct_size;
    std::memset(reinterpret_cast<char*>(out) + sizeof(size_t), 0,
                std::min(size, sizeof(gv_principal)) - sizeof(size_t));
    if (size < sizeof(gv_principal) || !caller_) return;
    out->user_id = {reinterpret_cast<const uint8_t*>(caller_->user_id.data()), caller_->user_id.size()};
    out->session_id = {reinterpret_cast<const uint8_t*>(caller_->session_id.data()),
                       caller_->session_id.size()};
    out->roles = caller_->role_bytes.data();
    out->role_count = caller_->role_bytes.size();
  }

  // The first authorization metadata value, or empty.
  std::string_view authorization() const {
    const auto& metadata = transport_.context.client_metadata();
    const auto it = metadata.find("authorization");
    return it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  }

  // A call another host forwarded keeps the origin it had there; every other is the network's.
  gv_call_origin origin() const override {
    return forwarded_origin_ != 0 ? forwarded_origin_ : GV_CALL_ORIGIN_NETWORK;
  }

  gv_bytes method() const override {
    const std::string& method = transport_.method();
    return {reinterpret_cast<const uint8_t*>(method.data()), method.size()};
  }

  size_t request_bytes() const override { return request_bytes_; }

  gv_bytes peer() const override {
    std::lock_guard lock(mu_);
    if (peer_.empty()) {
      peer_ = transport_.context.peer();
      // The HTTP gateway names its client's address, so that plugins see it as they would on the
      // gRPC port; it is believed only with the gateway's key.
      const auto& metadata = transport_.context.client_metadata();
      if (const auto forwarded = metadata.find(kForwardedPeerKey); forwarded != metadata.end()) {
        const auto key = metadata.find(kForwardingKeyKey);
        if (key != metadata.end() && server_.is_forwarding_key({key->second.data(), key->second.size()})) {
          peer_.assign(forwarded->second.data(), forwarded->second.size());
        }
      }
    }
    return {reinterpret_cast<const uint8_t*>(peer_.data()), peer_.size()};
  }

  // Sends and finishes from a handle that is no longer the call's (the call moved on) fail.
  gv_status_code send_via(const gv_call* handle, const uint8_t* data, size_t size) {
    grpc::Slice slice(data, size);
    std::lock_guard lock(mu_);
    if (handle != handle_ || plugin_finished_ || host_ended_) return GV_STATUS_FAILED_PRECONDITION;
    if (cancelled_ || write_failed_) return GV_STATUS_CANCELLED;
    if (single_response(route_.kind)) {
      if (reply_) return GV_STATUS_FAILED_PRECONDITION;
      reply_ = std::move(slice);
      return GV_STATUS_OK;
    }
    grpc::ByteBuffer buffer(&slice, 1);
    if (queued_bytes_ + size > max_queued_bytes()) return GV_STATUS_RESOURCE_EXHAUSTED;
    if (write_in_flight_) {
      queued_bytes_ += size;
      write_queue_.push_back(std::move(buffer));
    } else {
      start_write_locked(std::move(buffer));
    }
    return GV_STATUS_OK;
  }

  gv_status_code finish_via(const gv_call* handle, gv_status_code code, std::string_view message) {
    grpc::Status status = to_grpc(code, message);
    std::lock_guard lock(mu_);
    if (handle != handle_ || plugin_finished_) return GV_STATUS_FAILED_PRECONDITION;
    plugin_finished_ = true;
    if (host_ended_) {
      // The host answered the client already (abort_call); now that the plugin is done with the
      // call too, it can be released: on the completion thread, never inside this finish.
      arm_control_locked();
      return GV_STATUS_FAILED_PRECONDITION;
    }
    if (single_response(route_.kind) && status.ok()) {
      if (!reply_) {
        start_finish_locked({grpc::StatusCode::INTERNAL,
                             "the handler of " + transport_.method() + " finished without a response"});
      } else if (!server_.closed_) {
        ++pending_ops_;
        final_code_ = grpc::StatusCode::OK;
        transport_.write_and_finish(*reply_, status, &finish_tag_);
      }
      return GV_STATUS_OK;
    }
    finish_after_writes_locked(std::move(status));
    return GV_STATUS_OK;
  }

  // plugin::LiveCall: called under the generation's call-registry lock.
  void request_move(std::shared_ptr<plugin::Plugin> next, uint32_t method_index) override {
    std::lock_guard lock(mu_);
    if (plugin_finished_ || host_ended_) return;
    move_target_.emplace(std::move(next), method_index);
    arm_control_locked();
  }

  void request_abort(std::string message) override {
    std::lock_guard lock(mu_);
    if (plugin_finished_ || host_ended_) return;
    abort_message_ = std::move(message);
    arm_control_locked();
  }

  gv_call_kind kind() const override { return route_.kind; }
  const std::string& method_name() const override { return transport_.method(); }

 private:
  // A handle the call gets in each generation it moves to; it forwards to the call.
  class MovedHandle final : public gv_call {
   public:
    explicit MovedHandle(ServerCall& call) : call_(call) {}
    gv_status_code send(const uint8_t* data, size_t size) override {
      return call_.send_via(this, data, size);
    }
    gv_status_code finish(gv_status_code code, std::string_view message) override {
      return call_.finish_via(this, code, message);
    }
    int64_t deadline_unix_ms() const override { return call_.deadline_unix_ms(); }
    bool is_cancelled() const override { return call_.is_cancelled(); }
    size_t metadata(const char* key, gv_bytes* values, size_t max_values) const override {
      return call_.metadata(key, values, max_values);
    }
    void principal(gv_principal* out) const override { call_.principal(out); }
    gv_bytes method() const override { return call_.method(); }
    gv_bytes peer() const override { return call_.peer(); }
    gv_call_origin origin() const override { return call_.origin(); }

   private:
    ServerCall& call_;
  };

  size_t max_queued_bytes() const { return static_cast<size_t>(server_.config_.max_message_bytes) * 16; }

  void on_request() {
    server_.slot_taken(queue_, transport_.slot(server_));
    request_taken_ = true;
    take_request_id();
    deadline_unix_ms_ = unix_ms(transport_.context.deadline());
    const std::string& method = transport_.method();
    const auto routes = server_.routes_();
    const auto it = routes->find(method);
    if (server_.call_metrics_ != nullptr) {
      metrics_ = it != routes->end() || server_.host_methods_.contains(method)
                     ? server_.method_metrics(queue_, transport_.slot(server_), method)
                     : server_.call_metrics_->unrouted();
      metrics_->start();
      started_at_ = std::chrono::steady_clock::now();
    }
    if (!take_forwarded_caller()) return;
    if (it == routes->end()) {
      std::lock_guard lock(mu_);
      if constexpr (!Transport::kRequestComesWithCall) {
        if (auto host = server_.host_methods_.find(method); host != server_.host_methods_.end()) {
          host_method_ = &host->second;
          route_.kind = GV_CALL_UNARY;
          start_read_locked();
          return;
        }
      }
      // No plugin code runs for it: the forwarding host may try another host (RemoteCalls).
      if (forwarded_origin_ != 0) transport_.context.AddTrailingMetadata(platform::kNotServedHereKey, "1");
      start_finish_locked(
          {grpc::StatusCode::UNIMPLEMENTED, "method " + method + " is not served by any loaded plugin"});
      return;
    }
    // A public method's caller is worked out only if the plugin asks (principal()): verifying a
    // bearer token costs more than the call's dispatch.
    if (forwarded_origin_ != 0 && it->second.plugin->name().starts_with("gameverse-")) {
      // The host's own services (admin above all) are this host's business: every host serves its
      // own, so none forwards a call to another's, and one that arrives is refused.
      std::lock_guard lock(mu_);
      start_finish_locked({grpc::StatusCode::PERMISSION_DENIED,
                           "method " + method +
                               " belongs to the host itself and takes no call forwarded from "
                               "another host"});
      return;
    }
    if (forwarded_origin_ != 0) {
      // Another host of the cluster vouches for the caller: the method's policy applies to it as
      // to a call made in process there; a plugin's own call keeps its plugin's trust, no more.
      if (forwarded_origin_ != GV_CALL_ORIGIN_PLUGIN) {
        if (auto refusal = it->second.access.refusal(method, caller_ ? &caller_->roles : nullptr)) {
          std::lock_guard lock(mu_);
          start_finish_locked({refusal->kind == config::AccessRefusal::Kind::kUnauthenticated
                                   ? grpc::StatusCode::UNAUTHENTICATED
                                   : grpc::StatusCode::PERMISSION_DENIED,
                               refusal->kind == config::AccessRefusal::Kind::kUnauthenticated
                                   ? refusal->message + ", and the call forwarded to this host has none"
                                   : refusal->message});
          return;
        }
      }
    } else if (server_.gate_ != nullptr && it->second.access.kind != config::AccessPolicy::Kind::kPublic) {
      Gate::Decision decision = server_.gate_->check(method, it->second.access, authorization());
      if (decision.refusal) {
        std::lock_guard lock(mu_);
        start_finish_locked(*decision.refusal);
        return;
      }
      std::call_once(caller_known_, [&] { caller_ = std::move(decision.caller); });
    }
    route_ = it->second;
    log_context_ = {request_id_, route_.plugin->name(), route_.plugin->generation()};
    route_.plugin->register_call(this);
    registered_ = true;
    if constexpr (Transport::kRequestComesWithCall) {
      if (route_.kind != GV_CALL_UNARY) {  // a plugin reloaded under this name with another kind
        std::lock_guard lock(mu_);
        start_finish_locked({grpc::StatusCode::UNIMPLEMENTED,
                             "method " + method + " is no longer unary; restart the host to serve it"});
        return;
      }
      grpc::Slice slice;
      deliver_start(bytes_of(read_buffer_, slice));
      read_buffer_.Clear();
    } else if (single_request(route_.kind)) {
      std::lock_guard lock(mu_);
      start_read_locked();
    } else {
      deliver_start({});
      std::lock_guard lock(mu_);
      if (!plugin_finished_) start_read_locked();
    }
  }

  void on_read(bool ok) {
    if (host_method_ != nullptr) {
      answer_host_method(ok);
    } else if (single_request(route_.kind)) {
      if (ok) {
        grpc::Slice slice;
        deliver_start(bytes_of(read_buffer_, slice));
        read_buffer_.Clear();
      } else {
        std::lock_guard lock(mu_);
        start_finish_locked({grpc::StatusCode::INVALID_ARGUMENT,
                             "the client sent no request message for " + transport_.method()});
      }
    } else if (ok) {
      if (!finished_by_plugin()) {
        grpc::Slice slice;
        plugin().on_call_message(route_.plugin->instance(), handle_, call_state_,
                                 bytes_of(read_buffer_, slice));
      }
      read_buffer_.Clear();
      std::lock_guard lock(mu_);
      if (!plugin_finished_) start_read_locked();
    } else if (!finished_by_plugin() && !cancelled_) {
      plugin().on_call_half_close(route_.plugin->instance(), handle_, call_state_);
    }
  }

  void answer_host_method(bool read_ok) {
    grpc::Slice slice;
    const gv_bytes request = bytes_of(read_buffer_, slice);
    std::string reply;
    grpc::Status status =
        read_ok ? (*host_method_)(std::string_view(reinterpret_cast<const char*>(request.data), request.size),
                                  reply)
                : grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the client sent no request message");
    std::lock_guard lock(mu_);
    if (status.ok() && !server_.closed_) {
      reply_ = grpc::Slice(reply);
      ++pending_ops_;
      final_code_ = grpc::StatusCode::OK;
      transport_.write_and_finish(*reply_, status, &finish_tag_);
    } else {
      start_finish_locked(std::move(status));
    }
  }

  void on_write(bool ok) {
    std::lock_guard lock(mu_);
    write_in_flight_ = false;
    if (!ok) {
      write_failed_ = true;
      write_queue_.clear();
      queued_bytes_ = 0;
    }
    if (!write_queue_.empty()) {
      grpc::ByteBuffer next = std::move(write_queue_.front());
      write_queue_.pop_front();
      queued_bytes_ -= next.Length();
      start_write_locked(std::move(next));
    } else if (deferred_finish_) {
      start_finish_locked(std::move(*deferred_finish_));
      deferred_finish_.reset();
    }
  }

  void on_done() {
    if (transport_.context.IsCancelled()) {
      cancelled_ = true;
      deliver_cancel();
    }
  }

  void on_control() {
    std::optional<std::pair<std::shared_ptr<plugin::Plugin>, uint32_t>> move;
    std::optional<std::string> abort;
    {
      std::lock_guard lock(mu_);
      control_armed_ = false;
      move.swap(move_target_);
      abort.swap(abort_message_);
    }
    if (abort) {
      abort_call(*abort);
    } else if (move) {
      move_call(std::move(move->first), move->second);
    }
  }

  // Ends the call for the client (hot reload's drain deadline): it gets UNAVAILABLE, the plugin a
  // cancel. The plugin still holds the call — a blocking handler may be using it — so the call
  // is released only once the plugin finishes it (that finish is refused); the manager keeps a
  // generation whose plugin never does mapped.
  void abort_call(const std::string& message) {
    {
      std::lock_guard lock(mu_);
      if (plugin_finished_ || host_ended_) return;
      host_ended_ = true;
      write_queue_.clear();
      queued_bytes_ = 0;
      finish_after_writes_locked({grpc::StatusCode::UNAVAILABLE, message});
    }
    cancelled_ = true;
    handle_->mark_ended();
    if (plugin_started_ && plugin().on_call_cancel != nullptr) {
      plugin().on_call_cancel(route_.plugin->instance(), handle_, call_state_);
    }
  }

  // Detaches the stream from its generation and hands it to `next`; when the old generation
  // cannot detach it, it stays and drains there.
  void move_call(std::shared_ptr<plugin::Plugin> next, uint32_t method_index) {
    if (!plugin_started_ || finished_by_plugin() || next->generation() <= route_.plugin->generation()) return;
    const std::shared_ptr<plugin::Plugin> old = route_.plugin;
    plugin::ByteSink detached;
    if (old->descriptor().on_call_detach == nullptr ||
        old->descriptor().on_call_detach(old->instance(), handle_, call_state_, &detached) != GV_STATUS_OK) {
      return;
    }
    gv_call* old_handle = nullptr;
    {
      std::lock_guard lock(mu_);
      if (plugin_finished_) return;  // the plugin finished during the detach: nothing to move
      moved_handles_.push_back(std::make_unique<MovedHandle>(*this));
      old_handle = handle_;
      handle_ = moved_handles_.back().get();
    }
    old_handle->mark_ended();
    if (old->descriptor().on_call_release != nullptr) {
      old->descriptor().on_call_release(old->instance(), old_handle, call_state_);
    }
    call_state_ = nullptr;
    next->register_call(this);
    route_.plugin = next;
    route_.method_index = method_index;
    log_context_ = {request_id_, route_.plugin->name(), route_.plugin->generation()};
    old->unregister_call(this);
    const gv_status_code adopted = next->descriptor().on_call_adopt(next->instance(), handle_, method_index,
                                                                    detached.view(), &call_state_);
    if (adopted != GV_STATUS_OK) {
      std::lock_guard lock(mu_);
      if (!plugin_finished_) {
        plugin_finished_ = true;
        finish_after_writes_locked(
            {grpc::StatusCode::UNAVAILABLE, "the stream could not continue in generation " +
                                                std::to_string(next->generation()) + " of plugin '" +
                                                next->name() + "' (status " + std::to_string(adopted) + ")"});
      }
    }
  }

  const gv_plugin_descriptor& plugin() const { return route_.plugin->descriptor(); }

  // A call that names a forwarded caller (gameverse-forwarded-*) or carries any gameverse-cluster-*
  // key must be signed by a host of the cluster: then the caller, its origin and its peer are
  // believed; otherwise the call is refused, so that a client cannot pose as a host. False when the
  // call was refused.
  bool take_forwarded_caller() {
    const auto& metadata = transport_.context.client_metadata();
    bool from_cluster = false;
    for (const auto& [name, value] : metadata) {
      if (name.starts_with(platform::kClusterPrefix) || name.starts_with(platform::kForwardedPrefix))
        from_cluster = true;
    }
    if (!from_cluster) return true;
    auto refuse = [this](grpc::StatusCode code, std::string message) {
      std::lock_guard lock(mu_);
      start_finish_locked({code, std::move(message)});
      return false;
    };
    auto first = [&metadata](const char* name) -> std::optional<std::string> {
      const auto it = metadata.find(name);
      if (it == metadata.end()) return std::nullopt;
      return std::string(it->second.data(), it->second.size());
    };
    if (std::string why =
            cluster_peer_refusal(transport_.context.auth_context().get(), server_.cluster_peers());
        !why.empty()) {
      return refuse(grpc::StatusCode::UNAUTHENTICATED,
                    "this host takes forwarded calls only over TLS with a verified host certificate "
                    "([cluster] require_peer_certificate): " +
                        why);
    }
    platform::SignedCall signed_call;
    signed_call.method = transport_.method();
    signed_call.deadline = first(platform::kClusterDeadlineKey).value_or("");
    signed_call.origin = first(platform::kForwardedOriginKey).value_or("");
    signed_call.user = first(platform::kForwardedUserKey).value_or("");
    signed_call.session = first(platform::kForwardedSessionKey).value_or("");
    {
      const auto [begin, end] = metadata.equal_range(platform::kForwardedRoleKey);
      for (auto it = begin; it != end; ++it)
        signed_call.roles.emplace_back(it->second.data(), it->second.size());
    }
    signed_call.peer = first(platform::kForwardedCallerPeerKey).value_or("");
    signed_call.request_id = first(logging::kRequestIdKey.data()).value_or("");
    signed_call.host = first(platform::kClusterHostKey).value_or("");
    signed_call.time = first(platform::kClusterTimeKey).value_or("");
    signed_call.nonce = first(platform::kClusterNonceKey).value_or("");
    if (std::string why =
            server_.cluster_call_refusal(signed_call, first(platform::kClusterMacKey).value_or(""));
        !why.empty()) {
      return refuse(grpc::StatusCode::UNAUTHENTICATED,
                    "gameverse-forwarded-* and gameverse-cluster-* metadata are accepted from the hosts of "
                    "this cluster only (signed with its [cluster] secret): " +
                        why);
    }
    const gv_call_origin origin = platform::origin_from_wire_name(signed_call.origin);
    if (origin == 0) {
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, std::string("a forwarded call needs ") +
                                                            platform::kForwardedOriginKey +
                                                            ": for-caller, plugin or client");
    }
    // The signed deadline holds even where the transport's was lost on the way.
    if (signed_call.deadline != "none") {
      int64_t deadline = 0;
      const auto [end, error] = std::from_chars(
          signed_call.deadline.data(), signed_call.deadline.data() + signed_call.deadline.size(), deadline);
      if (error == std::errc() && end == signed_call.deadline.data() + signed_call.deadline.size())
        deadline_unix_ms_ = std::min(deadline_unix_ms_, deadline);
    }
    std::shared_ptr<Caller> caller;
    if (!signed_call.user.empty() && origin != GV_CALL_ORIGIN_PLUGIN) {
      caller = std::make_shared<Caller>();
      caller->user_id = std::move(signed_call.user);
      caller->session_id = std::move(signed_call.session);
      // Operator stands for this host's own [admin] token: no other host can vouch for it.
      for (auto& role : signed_call.roles)
        if (role != config::kOperatorRole) caller->roles.push_back(std::move(role));
      for (const auto& role : caller->roles)
        caller->role_bytes.push_back({reinterpret_cast<const uint8_t*>(role.data()), role.size()});
    }
    forwarded_origin_ = origin;
    forwarded_by_ = signed_call.host.empty() ? "cluster:" + transport_.context.peer() : signed_call.host;
    std::call_once(caller_known_, [&] { caller_ = std::move(caller); });
    {
      std::lock_guard lock(mu_);
      peer_ = std::move(signed_call.peer);
      if (peer_.empty()) peer_ = "cluster:" + transport_.context.peer();
    }
    // Tells the forwarding host that its call reached a host (see RemoteCalls), before the plugin
    // runs: a connection lost while it runs leaves no trailers, and the call must not be sent again.
    // The trailers say it too, for a reply that carries no headers of its own.
    transport_.context.AddInitialMetadata(platform::kServedByClusterKey, "1");
    transport_.context.AddTrailingMetadata(platform::kServedByClusterKey, "1");
    {
      std::lock_guard lock(mu_);
      if (!server_.closed_) {
        ++pending_ops_;
        transport_.send_initial_metadata(&initial_metadata_tag_);
      }
    }
    return true;
  }

  // The client's x-request-id when it sent one sane value, else a new one; sent back in the
  // initial metadata, which every reply carries, an error alone too (gRPC then sends headers
  // before the status, not a trailers-only reply).
  void take_request_id() {
    const auto& client = transport_.context.client_metadata();
    const auto [begin, end] =
        client.equal_range(grpc::string_ref(logging::kRequestIdKey.data(), logging::kRequestIdKey.size()));
    if (begin != end && std::next(begin) == end &&
        logging::is_sane_request_id(std::string_view(begin->second.data(), begin->second.size()))) {
      request_id_ = std::string_view(begin->second.data(), begin->second.size());
    } else {
      generated_request_id_ = logging::GeneratedRequestId::make();
      request_id_ = generated_request_id_.view();
    }
    log_context_.request_id = request_id_;
    static const std::string key(logging::kRequestIdKey);
    transport_.context.AddInitialMetadata(key, std::string(request_id_));
  }

  void deliver_start(gv_bytes request) {
    plugin_started_ = true;
    request_bytes_ = request.size;
    plugin().on_call_start(route_.plugin->instance(), handle_, route_.method_index, request, &call_state_);
  }

  void deliver_cancel() {
    handle_->mark_ended();
    if (plugin_started_ && plugin().on_call_cancel != nullptr && !finished_by_plugin()) {
      plugin().on_call_cancel(route_.plugin->instance(), handle_, call_state_);
    }
  }

  static gv_bytes bytes_of(const grpc::ByteBuffer& buffer, grpc::Slice& holder) {
    if (!buffer.TrySingleSlice(&holder).ok()) {
      if (!buffer.DumpToSingleSlice(&holder).ok()) return {nullptr, 0};
    }
    return {holder.begin(), holder.size()};
  }

  // Whether the plugin gets no more hooks for the call: it finished it, or the host ended it.
  bool finished_by_plugin() {
    std::lock_guard lock(mu_);
    return plugin_finished_ || host_ended_;
  }

  void arm_control_locked() {
    if (control_armed_ || server_.closed_) return;
    control_armed_ = true;
    if (!alarm_) alarm_ = std::make_unique<grpc::Alarm>();
    ++pending_ops_;
    alarm_->Set(queue_.cq.get(), gpr_now(GPR_CLOCK_MONOTONIC), &control_tag_);
  }

  void start_read_locked() {
    if (server_.closed_) return;
    ++pending_ops_;
    transport_.read(&read_buffer_, &read_tag_);
  }

  void start_write_locked(grpc::ByteBuffer buffer) {
    if (server_.closed_) return;
    ++pending_ops_;
    write_in_flight_ = true;
    write_buffer_ = std::move(buffer);
    transport_.write(write_buffer_, &write_tag_);
  }

  void finish_after_writes_locked(grpc::Status status) {
    if (write_in_flight_) {
      deferred_finish_ = std::move(status);
    } else {
      start_finish_locked(std::move(status));
    }
  }

  void start_finish_locked(grpc::Status status) {
    if (finish_started_ || server_.closed_) return;
    finish_started_ = true;
    ++pending_ops_;
    final_code_ = status.error_code();
    transport_.finish(status, &finish_tag_);
  }

  void maybe_delete(int ops_delta) {
    {
      std::lock_guard lock(mu_);
      pending_ops_ += ops_delta;
      if (pending_ops_ > 0 || (plugin_started_ && !plugin_finished_)) return;
    }
    handle_->mark_ended();
    if (plugin_started_ && plugin().on_call_release != nullptr) {
      plugin().on_call_release(route_.plugin->instance(), handle_, call_state_);
    }
    if (registered_) route_.plugin->unregister_call(this);
    if (request_taken_) server_.slot_call_ended(queue_, transport_.slot(server_));
    if (metrics_ != nullptr) metrics_->end(final_code_, std::chrono::steady_clock::now() - started_at_);
    Server& server = server_;
    delete this;
    server.call_ended();
  }

  Server& server_;
  Server::Queue& queue_;
  Transport transport_;
  Tag request_tag_{this, Op::kRequest};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  Tag done_tag_{this, Op::kDone};
  Tag control_tag_{this, Op::kControl};
  Tag initial_metadata_tag_{this, Op::kInitialMetadata};

  // Touched only on the completion thread (hooks run there); handle_ is also read under mu_.
  plugin::Route route_{};
  const Server::HostMethod* host_method_ = nullptr;
  CallMetrics::Method* metrics_ = nullptr;  // null: calls are not counted
  std::chrono::steady_clock::time_point started_at_;
  int64_t deadline_unix_ms_ = INT64_MAX;
  std::string_view request_id_;  // into the client's metadata, or generated_request_id_
  logging::GeneratedRequestId generated_request_id_;
  logging::CallLogContext log_context_;
  bool request_taken_ = false;  // a call took this slot (it stops counting when it ends)
  bool plugin_started_ = false;
  bool registered_ = false;
  gv_call_origin forwarded_origin_ = 0;  // set: another host of the cluster forwarded the call
  std::string forwarded_by_;             // then: the host that did, as it signed
  void* call_state_ = nullptr;
  grpc::ByteBuffer read_buffer_;
  std::atomic<bool> cancelled_{false};
  std::vector<std::unique_ptr<MovedHandle>> moved_handles_;
  std::unique_ptr<grpc::Alarm> alarm_;

  mutable std::mutex mu_;
  gv_call* handle_ = this;  // the handle of the generation that owns the call now
  int pending_ops_ = 0;
  bool plugin_finished_ = false;
  bool host_ended_ = false;  // abort_call answered the client; the plugin has yet to finish
  size_t request_bytes_ = 0;
  bool finish_started_ = false;
  int final_code_ = grpc::StatusCode::CANCELLED;  // what the finish sent; a call never finished was cancelled
  bool write_in_flight_ = false;
  bool write_failed_ = false;
  bool control_armed_ = false;
  grpc::ByteBuffer write_buffer_;
  std::list<grpc::ByteBuffer> write_queue_;  // a list: no allocation while empty, as in unary calls
  size_t queued_bytes_ = 0;
  std::optional<grpc::Slice> reply_;  // a single response, until the finish sends it
  std::optional<grpc::Status> deferred_finish_;
  std::optional<std::pair<std::shared_ptr<plugin::Plugin>, uint32_t>> move_target_;
  std::optional<std::string> abort_message_;
  mutable std::string peer_;
  // Set by the gate before the plugin sees the call, or (public methods) on the first principal().
  mutable std::once_flag caller_known_;
  mutable std::shared_ptr<const Caller> caller_;
};

UnaryMethods::UnaryMethods(const std::vector<std::string>& names) : names_(names) {
  for (size_t i = 0; i < names_.size(); ++i) {
    AddMethod(new grpc::internal::RpcServiceMethod(names_[i].c_str(), grpc::internal::RpcMethod::NORMAL_RPC,
                                                   nullptr));
    MarkMethodRaw(static_cast<int>(i));
  }
}

void UnaryMethods::request(int index, grpc::ServerContext* context, grpc::ByteBuffer* request,
                           grpc::ServerAsyncResponseWriter<UnaryReply>* responder,
                           grpc::ServerCompletionQueue* queue, void* tag) {
  RequestAsyncUnary(index, context, request, responder, queue, queue, tag);
}

Server::Server(config::ServerConfig config, RouteSource routes, std::vector<std::string> unary_methods)
    : config_(std::move(config)), routes_(std::move(routes)), unary_method_names_(std::move(unary_methods)) {
  unsigned char key[32];
  randombytes_buf(key, sizeof key);
  forwarding_key_.resize(sizeof key * 2 + 1);
  sodium_bin2hex(forwarding_key_.data(), forwarding_key_.size(), key, sizeof key);
  forwarding_key_.pop_back();
}

std::string Server::cluster_call_refusal(const platform::SignedCall& call, std::string_view mac) {
  if (cluster_secret_.empty()) return "this host is in no cluster";
  if (mac.empty()) return "no gameverse-cluster-mac";
  if (!platform::same_mac(mac, platform::call_mac(cluster_secret_, call)))
    return "the signature does not match";
  int64_t signed_at = 0;
  const auto [end, error] = std::from_chars(call.time.data(), call.time.data() + call.time.size(), signed_at);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  if (error != std::errc() || end != call.time.data() + call.time.size() ||
      signed_at < now - platform::kClusterClockSkewMs || signed_at > now + platform::kClusterClockSkewMs) {
    return "signed at a time more than " + std::to_string(platform::kClusterClockSkewMs) +
           " ms from this host's clock";
  }
  if (call.nonce.empty()) return "no gameverse-cluster-nonce";
  return cluster_senders_.admit(call.host, call.nonce, now);
}

bool Server::is_forwarding_key(std::string_view key) const {
  return key.size() == forwarding_key_.size() &&
         sodium_memcmp(key.data(), forwarding_key_.data(), key.size()) == 0;
}

Server::~Server() {
  if (server_ && !closed_) shutdown(std::chrono::milliseconds(0));
}

int Server::start() {
  // The host's own unary methods ride the generic path: gRPC's default health service would add a
  // completion queue of its own, whose thread then steals transport events from ours (measured:
  // a third of the throughput).
  host_methods_.emplace("/grpc.health.v1.Health/Check", [this](std::string_view request, std::string& reply) {
    return health_check(*routes_(), !draining_, request, reply);
  });
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.listen, server_credentials(config_.tls), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.RegisterAsyncGenericService(&generic_);
  unary_methods_ = std::make_unique<UnaryMethods>(unary_method_names_);
  if (!unary_method_names_.empty()) builder.RegisterService(unary_methods_.get());
  size_t threads = static_cast<size_t>(config_.worker_threads);
  if (threads == 0) {
    const platform::CpuBudget cpus = platform::usable_cpus();
    threads = cpus.count;
    spdlog::info("worker_threads = 0: usable CPUs: {} ({}); one completion-queue thread each", cpus.count,
                 cpus.reason);
  }
  for (size_t i = 0; i < threads; ++i) {
    auto queue = std::make_unique<Queue>();
    queue->cq = builder.AddCompletionQueue();
    queue->waiting.assign(generic_slot() + 1, 0);
    queue->active.assign(generic_slot() + 1, 0);
    queue->target.assign(generic_slot() + 1, kInitialSlotsPerMethod);
    queue->target[generic_slot()] = kInitialGenericSlots;
    queues_.push_back(std::move(queue));
  }
  if (call_metrics_ != nullptr) {
    for (const auto& name : unary_method_names_) unary_metrics_.push_back(call_metrics_->method(name));
  }
  server_ = builder.BuildAndStart();
  const bool unix_socket = config_.listen.rfind("unix:", 0) == 0;
  if (!server_ || (!unix_socket && port == 0)) {
    throw std::runtime_error("cannot listen on " + config_.listen +
                             " (address in use, or not an address of this machine?)");
  }
  for (auto& queue : queues_) {
    for (size_t slot = 0; slot <= generic_slot(); ++slot) {
      while (queue->waiting[slot] < queue->target[slot] && post_slot(*queue, slot)) {
      }
    }
    threads_.emplace_back([this, q = queue->cq.get()] { run(q); });
  }
  return unix_socket ? 0 : port;
}

bool Server::post_slot(Queue& queue, size_t slot) {
  if (closed_) return false;
  ++live_calls_;
  ++queue.waiting[slot];
  if (slot == generic_slot()) {
    new ServerCall<GenericTransport>(*this, queue);
  } else {
    new ServerCall<UnaryTransport>(*this, queue, static_cast<int>(slot));
  }
  return true;
}

void Server::slot_taken(Queue& queue, size_t slot) {
  --queue.waiting[slot];
  if (++queue.active[slot] >= queue.target[slot]) {
    const int max = slot == generic_slot() ? kMaxGenericSlots : kMaxSlotsPerUnaryMethod;
    queue.target[slot] = std::min(queue.target[slot] * 2, max);
  }
  while (queue.waiting[slot] < queue.target[slot] && post_slot(queue, slot)) {
  }
}

void Server::run(grpc::ServerCompletionQueue* queue) {
  void* tag = nullptr;
  bool ok = false;
  while (queue->Next(&tag, &ok)) {
    auto* t = static_cast<CompletionHandler::Tag*>(tag);
    t->call->on_completion(t->op, ok);
  }
}

CallMetrics::Method* Server::method_metrics(Queue& queue, size_t slot, const std::string& method) {
  if (slot < unary_metrics_.size()) return unary_metrics_[slot];
  auto& found = queue.metrics_by_method[method];
  if (found == nullptr) found = call_metrics_->method(method);
  return found;
}

void Server::call_ended() {
  if (--live_calls_ == 0) {
    std::lock_guard lock(live_mu_);  // a waiter between its check and its wait gets the notify
    live_cv_.notify_all();
  }
}

void Server::shutdown(std::chrono::milliseconds drain) {
  if (!server_ || closed_) return;
  const auto deadline = std::chrono::system_clock::now() + drain;
  draining_ = true;
  // grpc::Server::Shutdown also waits for clients to close their idle connections, which can take
  // the whole deadline; so it runs aside while we watch our own calls.
  std::thread stopping([this, deadline] { server_->Shutdown(deadline); });
  // Calls cancelled at the deadline are still owned by their plugins until they finish them.
  constexpr auto kPluginFinishGrace = std::chrono::seconds(5);
  {
    std::unique_lock lock(live_mu_);
    if (!live_cv_.wait_until(lock, deadline + kPluginFinishGrace, [this] { return live_calls_ == 0; })) {
      spdlog::error("{} calls were not finished by their plugins {} s after the drain; abandoning them",
                    live_calls_.load(), kPluginFinishGrace.count());
    }
  }
  // No call is in flight and no slot waits (shutdown cancelled them): close idle connections now.
  grpc_server_cancel_all_calls(server_->c_server());
  stopping.join();
  closed_ = true;
  for (auto& queue : queues_) queue->cq->Shutdown();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

}  // namespace gameverse::rpc
