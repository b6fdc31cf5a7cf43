// The echo example: every call kind through the C++ SDK, a blocking handler on the host's pool,
// an asynchronous method that honours cancellation and deadlines on host timers, a server stream
// that moves to the next generation on hot reload, and methods that throw. It owns no threads.
#include <gameverse/sdk/plugin.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "gameverse/echo/v1/echo.pb.h"

namespace {

namespace sdk = gameverse::sdk;
using sdk::CallContext;
using sdk::InitContext;
using sdk::PluginBuilder;
using sdk::ServerStream;
using sdk::Status;
using sdk::StatusCode;
using sdk::StreamReader;
using sdk::UnaryResponder;
namespace pb = gameverse::echo::v1;

// A unique name for this plugin instance, so clients can see which generation answered.
std::string new_instance_id() {
  static std::atomic<uint64_t> sequence{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return std::to_string(now) + "-" + std::to_string(sequence++);
}

// One Count stream: a host timer writes its next value every interval. Writes and detach share
// the session's lock, so once detach() returns its position, this generation writes no more and
// the next one continues from exactly there.
class CountSession final : public sdk::StreamSession {
 public:
  CountSession(ServerStream<pb::CountReply> stream, uint64_t next, uint64_t limit, uint32_t interval_ms,
               const std::string& instance_id)
      : stream_(std::move(stream)),
        next_(next),
        limit_(limit),
        interval_(std::chrono::milliseconds(std::max<uint32_t>(interval_ms, 1))),
        instance_id_(instance_id) {}

  void start(const sdk::Host& host) {
    timer_ = host.start_timer(std::chrono::nanoseconds(0), interval_, [this] { tick(); });
  }

  std::string detach() override {
    timer_.cancel();  // no tick runs once it returns
    std::lock_guard lock(mu_);
    stopped_ = true;
    pb::CountRequest position;  // the next value to send, the limit and the interval
    position.set_limit(limit_);
    position.set_interval_ms(
        static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(interval_).count()));
    return std::to_string(next_) + "/" + position.SerializeAsString();
  }

  void on_cancel() override {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }

 private:
  void tick() {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    pb::CountReply reply;
    reply.set_value(next_);
    reply.set_instance_id(instance_id_);
    if (!stream_.write(reply)) {
      stopped_ = true;
      return;
    }
    if (limit_ != 0 && next_ >= limit_) {
      stopped_ = true;  // the timer ends with the session, once the host releases the call
      stream_.finish();
      return;
    }
    ++next_;
  }

  ServerStream<pb::CountReply> stream_;
  std::mutex mu_;
  bool stopped_ = false;
  uint64_t next_;
  uint64_t limit_;
  std::chrono::nanoseconds interval_;
  const std::string& instance_id_;
  sdk::Timer timer_;  // last: cancelled before the members its ticks use go
};

class EchoPlugin final : public sdk::Plugin {
 public:
  explicit EchoPlugin(InitContext& init)
      : host_(init.host),
        max_stream_messages_(init.host.config_int("max_stream_messages")),
        max_sleep_ms_(init.host.config_int("max_sleep_ms")),
        handovers_(init.previous_state.empty() ? 0 : std::stoull(std::string(init.previous_state)) + 1) {
    init.host.info("echo ready");
  }

  ~EchoPlugin() override {
    std::map<uint64_t, std::unique_ptr<PendingSleep>> left;
    {
      std::lock_guard lock(sleeps_mu_);
      left.swap(sleeps_);
    }
    for (auto& [id, sleep] : left) {
      sleep->timer.cancel();
      sleep->responder.fail(Status(StatusCode::kUnavailable, "the echo plugin is shutting down"));
    }
  }

  // A demo service: open to anyone unless the config says otherwise ([plugin.access]).
  static void describe(PluginBuilder<EchoPlugin>& b) {
    b.service("gameverse.echo.v1.Echo")
        .unary("Echo", &EchoPlugin::echo, sdk::kPublic)
        .blocking("BlockingEcho", &EchoPlugin::blocking_echo, sdk::kPublic)
        .server_stream("Expand", &EchoPlugin::expand, sdk::kPublic)
        .client_stream("Collect", &EchoPlugin::collect, sdk::kPublic)
        .bidi_stream_movable("Chat", &EchoPlugin::chat, &EchoPlugin::resume_chat, sdk::kPublic)
        .unary_async("Sleep", &EchoPlugin::sleep, sdk::kPublic)
        .blocking("Hold", &EchoPlugin::hold, sdk::kPublic)
        .unary("Fail", &EchoPlugin::fail, sdk::kPublic)
        .unary("Stats", &EchoPlugin::stats, sdk::kPublic)
        .server_stream_movable("Count", &EchoPlugin::count, &EchoPlugin::resume_count, sdk::kPublic)
        .unary("WhoAmI", &EchoPlugin::who_am_i, sdk::kPublic)
        .unary_async("RequestId", &EchoPlugin::request_id, sdk::kPublic);
    b.config_int("max_stream_messages", 100000, "Largest count an Expand call may ask for", sdk::at_least(1))
        .config_int("max_sleep_ms", 60000, "Longest duration a Sleep or Hold call may ask for",
                    sdk::at_least(0));
  }

  Status who_am_i(CallContext& context, const pb::WhoAmIRequest&, pb::WhoAmIReply& reply) {
    const gameverse::sdk::Principal caller = context.principal();
    reply.set_user_id(caller.user_id);
    reply.set_session_id(caller.session_id);
    for (const auto& role : caller.roles) reply.add_roles(role);
    reply.set_calling_plugin(std::string(context.calling_plugin()));
    reply.set_plugin_with_own_trust(std::string(context.plugin_with_own_trust()));
    reply.set_peer(std::string(context.peer()));
    reply.set_forwarded_by(std::string(context.forwarded_by()));
    return Status::ok();
  }

  // The host puts the request id on every line written during the call; the message has it too,
  // so that a test can match the two.
  void request_id(CallContext& context, const pb::RequestIdRequest& request,
                  UnaryResponder<pb::RequestIdReply> responder) {
    auto reply = std::make_shared<pb::RequestIdReply>();
    reply->set_request_id(std::string(context.request_id()));
    auto shared = std::make_shared<UnaryResponder<pb::RequestIdReply>>(std::move(responder));
    const auto answer = [this, reply, shared](const char* where) {
      host_.info("request id " + reply->request_id() + " " + where);
      shared->reply(*reply);
    };
    switch (request.path()) {
      case pb::RequestIdRequest::ON_POOL:
        host_.run_blocking([answer] { answer("(on the pool)"); }, &context);
        return;
      case pb::RequestIdRequest::AFTER_CALL:
        host_.call_async("/gameverse.echo.v1.Echo/RequestId", pb::RequestIdRequest().SerializeAsString(),
                         context, std::chrono::milliseconds(0),
                         [answer, reply, shared](sdk::CallResult result) {
                           pb::RequestIdReply inner;
                           if (!result.status.is_ok() || !inner.ParseFromString(result.response)) {
                             shared->fail(result.status.is_ok()
                                              ? Status(StatusCode::kInternal, "unreadable RequestId reply")
                                              : result.status);
                             return;
                           }
                           reply->set_inner_request_id(inner.request_id());
                           answer("(after an in-process call)");
                         });
        return;
      default: answer("(inline)");
    }
  }

  Status echo(CallContext&, const pb::EchoRequest& request, pb::EchoReply& reply) {
    reply.set_payload(request.payload());
    return Status::ok();
  }

  void expand(CallContext&, const pb::ExpandRequest& request, ServerStream<pb::EchoReply> stream) {
    if (request.count() > max_stream_messages_) {
      stream.finish(Status(StatusCode::kInvalidArgument, "count " + std::to_string(request.count()) +
                                                             " exceeds max_stream_messages " +
                                                             std::to_string(max_stream_messages_)));
      return;
    }
    pb::EchoReply reply;
    reply.set_payload(request.payload());
    for (uint32_t i = 1; i <= request.count(); ++i) {
      reply.set_sequence(i);
      if (!stream.write(reply)) return;
    }
  }

  class Collector final : public StreamReader<pb::EchoRequest> {
   public:
    explicit Collector(ServerStream<pb::CollectReply> out) : out_(std::move(out)) {}
    void on_message(const pb::EchoRequest& request) override {
      reply_.mutable_joined()->append(request.payload());
      reply_.set_message_count(reply_.message_count() + 1);
    }
    void on_half_close() override {
      out_.write(reply_);
      out_.finish();
    }

   private:
    ServerStream<pb::CollectReply> out_;
    pb::CollectReply reply_;
  };

  std::unique_ptr<StreamReader<pb::EchoRequest>> collect(CallContext&, ServerStream<pb::CollectReply> out) {
    return std::make_unique<Collector>(std::move(out));
  }

  // Hooks of one call never overlap, so the sequence needs no lock: detach() sees the last one.
  class Chatter final : public StreamReader<pb::EchoRequest> {
   public:
    Chatter(ServerStream<pb::EchoReply> out, uint64_t sequence, const std::string& instance_id)
        : out_(std::move(out)), sequence_(sequence), instance_id_(instance_id) {}
    void on_message(const pb::EchoRequest& request) override {
      pb::EchoReply reply;
      reply.set_payload(request.payload());
      reply.set_sequence(++sequence_);
      reply.set_instance_id(instance_id_);
      out_.write(reply);
    }
    void on_half_close() override { out_.finish(); }
    std::optional<std::string> detach() override { return std::to_string(sequence_); }

   private:
    ServerStream<pb::EchoReply> out_;
    uint64_t sequence_;
    const std::string& instance_id_;
  };

  std::unique_ptr<StreamReader<pb::EchoRequest>> chat(CallContext&, ServerStream<pb::EchoReply> out) {
    return std::make_unique<Chatter>(std::move(out), 0, instance_id_);
  }

  std::unique_ptr<StreamReader<pb::EchoRequest>> resume_chat(std::string_view detached,
                                                             ServerStream<pb::EchoReply> out) {
    return std::make_unique<Chatter>(std::move(out), std::stoull(std::string(detached)), instance_id_);
  }

  std::unique_ptr<sdk::StreamSession> count(CallContext&, const pb::CountRequest& request,
                                            ServerStream<pb::CountReply> stream) {
    if (request.interval_ms() == 0 || request.interval_ms() > 60000) {
      throw sdk::Error(StatusCode::kInvalidArgument, "interval_ms " + std::to_string(request.interval_ms()) +
                                                         " is not between 1 and 60000");
    }
    return start_count(std::move(stream), 1, request.limit(), request.interval_ms());
  }

  // `detached` is "<next value>/<serialized CountRequest>", written by CountSession::detach.
  std::unique_ptr<sdk::StreamSession> resume_count(std::string_view detached,
                                                   ServerStream<pb::CountReply> stream) {
    const size_t slash = detached.find('/');
    pb::CountRequest position;
    if (slash == std::string_view::npos ||
        !position.ParseFromArray(detached.data() + slash + 1,
                                 static_cast<int>(detached.size() - slash - 1))) {
      throw sdk::Error(StatusCode::kDataLoss, "unreadable Count position from the previous generation");
    }
    const uint64_t next = std::stoull(std::string(detached.substr(0, slash)));
    return start_count(std::move(stream), next, position.limit(), position.interval_ms());
  }

  std::string save_state() override { return std::to_string(handovers_); }

  // Answers from a host timer when the time comes, so a sleeping call holds no thread.
  void sleep(CallContext&, const pb::SleepRequest& request, UnaryResponder<pb::SleepReply> responder) {
    if (Status refused = check_duration(request.duration_ms()); !refused.is_ok()) {
      responder.fail(refused);
      return;
    }
    sleeps_started_++;
    const uint64_t id = next_sleep_++;
    // Runs at once when the client has already gone: before the sleep is stored, so it finds none.
    responder.on_cancel([this, id] { end_sleep(id, true); });
    if (responder.cancelled()) {
      sleeps_cancelled_++;
      return;
    }
    auto pending = std::make_unique<PendingSleep>(std::move(responder), request.duration_ms());
    std::unique_lock lock(sleeps_mu_);
    PendingSleep& sleep = *sleeps_.emplace(id, std::move(pending)).first->second;
    try {
      sleep.timer = host_.start_timer(std::chrono::milliseconds(request.duration_ms()),
                                      std::chrono::nanoseconds(0), [this, id] { end_sleep(id, false); });
    } catch (const sdk::Error& e) {
      std::unique_ptr<PendingSleep> failed = std::move(sleeps_.at(id));
      sleeps_.erase(id);
      lock.unlock();
      failed->responder.fail(e.status());
    }
  }

  // Echo on the host's pool for blocking work.
  Status blocking_echo(CallContext& context, const pb::EchoRequest& request, pb::EchoReply& reply) {
    blocking_echoes_++;
    return echo(context, request, reply);
  }

  // Holds a pool thread, as a handler waiting on a slow dependency would.
  Status hold(CallContext& context, const pb::SleepRequest& request, pb::SleepReply& reply) {
    if (Status refused = check_duration(request.duration_ms()); !refused.is_ok()) return refused;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(request.duration_ms());
    while (std::chrono::steady_clock::now() < until) {
      if (context.cancelled()) return {StatusCode::kCancelled, "the client cancelled the call"};
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    reply.set_slept_ms(request.duration_ms());
    return Status::ok();
  }

  Status fail(CallContext&, const pb::FailRequest& request, pb::EchoReply&) {
    if (request.code() != 0) {
      throw gameverse::sdk::Error(static_cast<StatusCode>(request.code()), request.message());
    }
    throw std::runtime_error(request.message());
  }

  Status stats(CallContext&, const pb::StatsRequest&, pb::StatsReply& reply) {
    reply.set_sleeps_started(sleeps_started_);
    reply.set_sleeps_completed(sleeps_completed_);
    reply.set_sleeps_cancelled(sleeps_cancelled_);
    reply.set_instance_id(instance_id_);
    reply.set_handovers(handovers_);
    reply.set_blocking_echoes(blocking_echoes_);
    return Status::ok();
  }

 private:
  struct PendingSleep {
    PendingSleep(UnaryResponder<pb::SleepReply> r, uint32_t ms) : responder(std::move(r)), duration_ms(ms) {}
    UnaryResponder<pb::SleepReply> responder;
    uint32_t duration_ms;
    sdk::Timer timer;
  };

  Status check_duration(uint32_t duration_ms) const {
    if (duration_ms <= max_sleep_ms_) return Status::ok();
    return {StatusCode::kInvalidArgument, "duration_ms " + std::to_string(duration_ms) +
                                              " exceeds max_sleep_ms " + std::to_string(max_sleep_ms_)};
  }

  // The sleep's timer fired, or its client cancelled: whichever comes first answers.
  void end_sleep(uint64_t id, bool cancelled) {
    std::unique_ptr<PendingSleep> sleep;
    {
      std::lock_guard lock(sleeps_mu_);
      auto it = sleeps_.find(id);
      if (it == sleeps_.end()) return;
      sleep = std::move(it->second);
      sleeps_.erase(it);
    }
    if (cancelled) {
      sleeps_cancelled_++;
    } else {
      pb::SleepReply reply;
      reply.set_slept_ms(sleep->duration_ms);
      if (sleep->responder.reply(reply)) sleeps_completed_++;
    }
    // Dropping it cancels its timer: from the timer's own callback, that run just ends.
  }

  std::unique_ptr<sdk::StreamSession> start_count(ServerStream<pb::CountReply> stream, uint64_t next,
                                                  uint64_t limit, uint32_t interval_ms) {
    auto session = std::make_unique<CountSession>(std::move(stream), next, limit, interval_ms, instance_id_);
    session->start(host_);
    return session;
  }

  sdk::Host host_;
  int64_t max_stream_messages_;
  int64_t max_sleep_ms_;
  uint64_t handovers_;
  std::string instance_id_ = new_instance_id();
  std::atomic<uint64_t> sleeps_started_{0};
  std::atomic<uint64_t> sleeps_completed_{0};
  std::atomic<uint64_t> sleeps_cancelled_{0};
  std::atomic<uint64_t> blocking_echoes_{0};
  std::mutex sleeps_mu_;
  std::atomic<uint64_t> next_sleep_{0};
  std::map<uint64_t, std::unique_ptr<PendingSleep>> sleeps_;
};

}  // namespace

// Tests build a second copy with another version, to hot-reload between two different files.
#ifndef ECHO_VERSION
#define ECHO_VERSION "1.0.0"
#endif

GAMEVERSE_PLUGIN(EchoPlugin, "echo", ECHO_VERSION, "Echoes what it is sent, in every call kind")
