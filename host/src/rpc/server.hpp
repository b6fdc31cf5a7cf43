// The one gRPC port. The host's own services are registered statically; every other method goes
// through an AsyncGenericService to the plugin that owns it (README "Calling it"; the dispatch
// path's measurements are in docs/benchmarks.md).
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/impl/service_type.h>
#include <grpcpp/server.h>
#include <grpcpp/support/async_unary_call.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "platform/cluster_auth.hpp"
#include "plugin/manager.hpp"
#include "rpc/call_metrics.hpp"
#include "rpc/forwarding.hpp"
#include "rpc/tls.hpp"

namespace gameverse::rpc {

class Gate;

// A unary call's reply: one slice that gRPC takes into its send buffer as it is (see the
// SerializationTraits below), where a grpc::ByteBuffer would be copied once more.
struct UnaryReply {
  const grpc::Slice* slice;
};

template <class Transport>
class ServerCall;
struct GenericTransport;
struct UnaryTransport;

// Unary methods registered by name before the server starts, served raw (bytes in, bytes out).
class UnaryMethods final : public grpc::Service {
 public:
  explicit UnaryMethods(const std::vector<std::string>& names);
  const std::string& name(int index) const { return names_[static_cast<size_t>(index)]; }
  void request(int index, grpc::ServerContext* context, grpc::ByteBuffer* request,
               grpc::ServerAsyncResponseWriter<UnaryReply>* responder, grpc::ServerCompletionQueue* queue,
               void* tag);

 private:
  std::vector<std::string> names_;
};

class Server {
 public:
  using RouteSource = std::function<std::shared_ptr<const plugin::RouteTable>()>;
  // A unary method the host answers itself: request bytes in, reply bytes out.
  using HostMethod = std::function<grpc::Status(std::string_view request, std::string& reply)>;

  // `unary_methods`: unary methods known before start, registered for the faster unary path;
  // every other method (and every method loaded later) is served through the generic service.
  Server(config::ServerConfig config, RouteSource routes, std::vector<std::string> unary_methods = {});
  ~Server();

  // Binds and starts serving; returns the bound TCP port (0 for a unix socket). Throws
  // std::runtime_error naming the address when it cannot listen.
  int start();

  // The gate every plugin call passes first; without one (tests of the dispatch path), calls go
  // straight to the plugins, anonymous. Set before start().
  void set_gate(Gate* gate) { gate_ = gate; }

  // Where calls are counted per method; none (the default): not counted. Set before start().
  void set_call_metrics(CallMetrics* metrics) { call_metrics_ = metrics; }

  // A channel to this server within the process, with no network in between: every call takes
  // the same path as one from the port (the request-path fuzzer). After start().
  std::shared_ptr<grpc::Channel> in_process_channel() { return server_->InProcessChannel({}); }

  // A random secret per process: calls that carry it (kForwardingKeyKey) may name the client they
  // forward (kForwardedPeerKey). Given to the host's HTTP gateway only.
  const std::string& forwarding_key() const { return forwarding_key_; }
  bool is_forwarding_key(std::string_view key) const;

  // The [cluster] secret: a call signed with it (platform/cluster_auth.hpp) comes from another host
  // of the cluster and may name the caller it forwards. Empty (the default): no call may. Set
  // before start().
  void set_cluster_secret(std::string secret) { cluster_secret_ = std::move(secret); }
  // Empty when `call` carries a valid `mac`, is signed within the clock window and its nonce is new;
  // else why not.
  std::string cluster_call_refusal(const platform::SignedCall& call, std::string_view mac);
  // [cluster] require_peer_certificate and peer_names: the connection a signed call comes over must
  // show a verified client certificate too. Set before start().
  void set_cluster_peers(ClusterPeerPolicy policy) { cluster_peers_ = std::move(policy); }
  const ClusterPeerPolicy& cluster_peers() const { return cluster_peers_; }

  // Stops accepting calls, lets in-flight calls finish for up to `drain`, cancels the rest and
  // waits for their plugins to finish them, then stops the worker threads.
  void shutdown(std::chrono::milliseconds drain);

 private:
  template <class Transport>
  friend class ServerCall;
  friend struct GenericTransport;
  friend struct UnaryTransport;

  // A completion queue and the request slots it keeps posted, per registered unary method and
  // (last) for the generic service. The counts are touched only by the queue's one thread, and by
  // start() before that thread runs.
  struct Queue {
    std::unique_ptr<grpc::ServerCompletionQueue> cq;
    std::vector<int> waiting;  // slots posted and not yet taken by a call
    std::vector<int> active;   // calls that took a slot and have not ended
    std::vector<int> target;   // how many to keep waiting: doubles while as many calls are active
    // Per-method counters of the generic path's methods, found once per queue without a lock.
    std::unordered_map<std::string, CallMetrics::Method*> metrics_by_method;
  };
  size_t generic_slot() const { return unary_method_names_.size(); }
  bool post_slot(Queue& queue, size_t slot);
  void slot_taken(Queue& queue, size_t slot);
  void slot_call_ended(Queue& queue, size_t slot) { --queue.active[slot]; }
  void run(grpc::ServerCompletionQueue* queue);
  void call_ended();
  // The counters for a call to `method` (served) taken from `slot`; null when calls are not counted.
  CallMetrics::Method* method_metrics(Queue& queue, size_t slot, const std::string& method);

  config::ServerConfig config_;
  std::string forwarding_key_;
  std::string cluster_secret_;
  ClusterPeerPolicy cluster_peers_;
  platform::ReplayGuard cluster_senders_;
  RouteSource routes_;
  Gate* gate_ = nullptr;
  CallMetrics* call_metrics_ = nullptr;
  std::vector<CallMetrics::Method*> unary_metrics_;  // per registered unary method; fixed at start()
  grpc::AsyncGenericService generic_;
  std::vector<std::string> unary_method_names_;
  std::unique_ptr<UnaryMethods> unary_methods_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<Queue>> queues_;  // calls keep a reference: never moved
  std::vector<std::thread> threads_;
  std::unordered_map<std::string, HostMethod> host_methods_;  // fixed before start()
  std::atomic<bool> draining_{false};  // shutdown has begun: health reports NOT_SERVING
  std::atomic<bool> closed_{false};    // the queues are shut down: no operation may start

  std::mutex live_mu_;
  std::condition_variable live_cv_;
  // ServerCall objects: calls in flight and slots waiting for one. Changed without the lock; the
  // last decrement notifies under it.
  std::atomic<size_t> live_calls_ = 0;
};

}  // namespace gameverse::rpc

template <>
class grpc::SerializationTraits<gameverse::rpc::UnaryReply> {
 public:
  static grpc::Status Serialize(const gameverse::rpc::UnaryReply& reply, grpc::ByteBuffer* buffer,
                                bool* own_buffer) {
    grpc::ByteBuffer bytes(reply.slice, 1);  // takes a reference to the slice, copies nothing
    buffer->Swap(&bytes);
    *own_buffer = true;
    return grpc::Status::OK;
  }
  static grpc::Status Deserialize(grpc::ByteBuffer*, gameverse::rpc::UnaryReply*) {
    return {grpc::StatusCode::INTERNAL, "a unary reply is never received"};
  }
};
