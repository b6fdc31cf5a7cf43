// The echo example: every call kind through the C++ SDK, an asynchronous method that honours
// cancellation and deadlines, and methods that throw.
#include <gameverse/sdk/plugin.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <stdexcept>
#include <thread>

#include "gameverse/echo/v1/echo.pb.h"

namespace {

using gameverse::sdk::CallContext;
using gameverse::sdk::InitContext;
using gameverse::sdk::PluginBuilder;
using gameverse::sdk::ServerStream;
using gameverse::sdk::Status;
using gameverse::sdk::StatusCode;
using gameverse::sdk::StreamReader;
using gameverse::sdk::UnaryResponder;
namespace pb = gameverse::echo::v1;

// Answers Sleep calls when their time comes, from one plugin-owned thread, so a sleeping call
// never holds a host thread.
class Sleeper {
 public:
  struct Counters {
    std::atomic<uint64_t> started{0};
    std::atomic<uint64_t> completed{0};
    std::atomic<uint64_t> cancelled{0};
  };

  Sleeper() : thread_([this] { run(); }) {}
  ~Sleeper() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  const Counters& counters() const { return counters_; }

  void add(std::chrono::steady_clock::time_point due, uint32_t duration_ms,
           UnaryResponder<pb::SleepReply> responder) {
    counters_.started++;
    responder.on_cancel([this] {
      counters_.cancelled++;
      wake_.notify_all();
    });
    {
      std::lock_guard lock(mu_);
      pending_.emplace(due, Job{duration_ms, std::move(responder)});
    }
    wake_.notify_all();
  }

 private:
  struct Job {
    uint32_t duration_ms;
    UnaryResponder<pb::SleepReply> responder;
  };

  void run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      // Cancelled jobs were already finished by the SDK; drop them.
      std::erase_if(pending_, [](auto& entry) { return entry.second.responder.cancelled(); });
      const auto now = std::chrono::steady_clock::now();
      while (!pending_.empty() && pending_.begin()->first <= now) {
        Job job = std::move(pending_.begin()->second);
        pending_.erase(pending_.begin());
        pb::SleepReply reply;
        reply.set_slept_ms(job.duration_ms);
        if (job.responder.reply(reply)) counters_.completed++;
      }
      if (pending_.empty()) {
        wake_.wait(lock);
      } else {
        wake_.wait_until(lock, pending_.begin()->first);
      }
    }
    for (auto& [due, job] : pending_) {
      job.responder.fail(Status(StatusCode::kUnavailable, "the echo plugin is shutting down"));
    }
  }

  Counters counters_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::multimap<std::chrono::steady_clock::time_point, Job> pending_;
  std::thread thread_;
};

// Drives Count streams: one plugin-owned thread writes each session's next value when it is due.
// A session's writes and its detach share the session's lock, so once detach() returns its
// value, this generation writes no more: the next one continues from exactly there.
class Ticker {
 public:
  class Session final : public gameverse::sdk::StreamSession {
   public:
    Session(Ticker& ticker, ServerStream<pb::CountReply> stream, uint64_t next, uint64_t limit,
            std::chrono::milliseconds interval)
        : ticker_(ticker), stream_(std::move(stream)), next_(next), limit_(limit), interval_(interval) {}
    ~Session() override { ticker_.remove(this); }

    std::string detach() override {
      ticker_.remove(this);
      std::lock_guard lock(mu_);
      stopped_ = true;
      pb::CountRequest position;  // the next value to send, the limit and the interval
      position.set_limit(limit_);
      position.set_interval_ms(static_cast<uint32_t>(interval_.count()));
      return std::to_string(next_) + "/" + position.SerializeAsString();
    }
    void on_cancel() override { ticker_.remove(this); }

    // Sends the next value; false when the stream is over.
    bool tick(const std::string& instance_id) {
      std::lock_guard lock(mu_);
      if (stopped_) return false;
      pb::CountReply reply;
      reply.set_value(next_);
      reply.set_instance_id(instance_id);
      if (!stream_.write(reply)) return false;
      if (limit_ != 0 && next_ >= limit_) {
        stream_.finish();
        return false;
      }
      ++next_;
      return true;
    }
    std::chrono::milliseconds interval() const { return interval_; }

   private:
    Ticker& ticker_;
    ServerStream<pb::CountReply> stream_;
    std::mutex mu_;
    bool stopped_ = false;
    uint64_t next_;
    uint64_t limit_;
    std::chrono::milliseconds interval_;
  };

  explicit Ticker(std::string instance_id)
      : instance_id_(std::move(instance_id)), thread_([this] { run(); }) {}
  ~Ticker() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  std::unique_ptr<gameverse::sdk::StreamSession> start(ServerStream<pb::CountReply> stream, uint64_t next,
                                                       uint64_t limit, uint32_t interval_ms) {
    auto session = std::make_unique<Session>(*this, std::move(stream), next, limit,
                                             std::chrono::milliseconds(std::max<uint32_t>(interval_ms, 1)));
    {
      std::lock_guard lock(mu_);
      due_.emplace(std::chrono::steady_clock::now(), session.get());
    }
    wake_.notify_all();
    return session;
  }

 private:
  void remove(Session* session) {
    std::unique_lock lock(mu_);
    std::erase_if(due_, [session](const auto& entry) { return entry.second == session; });
    // A tick of this session may be running without the lock: wait it out, and keep run() from
    // scheduling the session again.
    if (ticking_ == session) removed_while_ticking_ = true;
    idle_.wait(lock, [&] { return ticking_ != session; });
  }

  void run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (due_.empty()) {
        wake_.wait(lock);
        continue;
      }
      auto [when, session] = *due_.begin();
      if (when > std::chrono::steady_clock::now()) {
        wake_.wait_until(lock, when);
        continue;
      }
      due_.erase(due_.begin());
      ticking_ = session;
      lock.unlock();
      const bool more = session->tick(instance_id_);
      lock.lock();
      ticking_ = nullptr;
      if (more && !removed_while_ticking_) due_.emplace(when + session->interval(), session);
      removed_while_ticking_ = false;
      idle_.notify_all();
    }
  }

  std::string instance_id_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  bool stopping_ = false;
  Session* ticking_ = nullptr;
  bool removed_while_ticking_ = false;
  std::multimap<std::chrono::steady_clock::time_point, Session*> due_;
  std::thread thread_;
};

// A unique name for this plugin instance, so clients can see which generation answered.
std::string new_instance_id() {
  static std::atomic<uint64_t> sequence{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return std::to_string(now) + "-" + std::to_string(sequence++);
}

class EchoPlugin final : public gameverse::sdk::Plugin {
 public:
  explicit EchoPlugin(InitContext& init)
      : max_stream_messages_(init.host.config_int("max_stream_messages")),
        max_sleep_ms_(init.host.config_int("max_sleep_ms")),
        handovers_(init.previous_state.empty() ? 0 : std::stoull(std::string(init.previous_state)) + 1) {
    if (max_stream_messages_ < 1) {
      throw gameverse::sdk::Error(StatusCode::kInvalidArgument, "max_stream_messages must be at least 1");
    }
    init.host.info("echo ready");
  }

  static void describe(PluginBuilder<EchoPlugin>& b) {
    b.unary("/gameverse.echo.v1.Echo/Echo", &EchoPlugin::echo)
        .server_stream("/gameverse.echo.v1.Echo/Expand", &EchoPlugin::expand)
        .client_stream("/gameverse.echo.v1.Echo/Collect", &EchoPlugin::collect)
        .bidi_stream("/gameverse.echo.v1.Echo/Chat", &EchoPlugin::chat, &EchoPlugin::resume_chat)
        .unary_async("/gameverse.echo.v1.Echo/Sleep", &EchoPlugin::sleep)
        .unary("/gameverse.echo.v1.Echo/Fail", &EchoPlugin::fail)
        .unary("/gameverse.echo.v1.Echo/Stats", &EchoPlugin::stats)
        .server_stream_movable("/gameverse.echo.v1.Echo/Count", &EchoPlugin::count, &EchoPlugin::resume_count)
        .unary("/gameverse.echo.v1.Echo/WhoAmI", &EchoPlugin::who_am_i)
        .access_all(
            gameverse::sdk::kPublic)  // a demo service: open to anyone unless the config says otherwise
        .config_int("max_stream_messages", 100000, "Largest count an Expand call may ask for")
        .config_int("max_sleep_ms", 60000, "Longest duration a Sleep call may ask for");
  }

  Status who_am_i(CallContext& context, const pb::WhoAmIRequest&, pb::WhoAmIReply& reply) {
    const gameverse::sdk::Principal caller = context.principal();
    reply.set_user_id(caller.user_id);
    reply.set_session_id(caller.session_id);
    for (const auto& role : caller.roles) reply.add_roles(role);
    return Status::ok();
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

  std::unique_ptr<gameverse::sdk::StreamSession> count(CallContext&, const pb::CountRequest& request,
                                                       ServerStream<pb::CountReply> stream) {
    return ticker_.start(std::move(stream), 1, request.limit(), request.interval_ms());
  }

  // `detached` is "<next value>/<serialized CountRequest>", written by Ticker::Session::detach.
  std::unique_ptr<gameverse::sdk::StreamSession> resume_count(std::string_view detached,
                                                              ServerStream<pb::CountReply> stream) {
    const size_t slash = detached.find('/');
    pb::CountRequest position;
    if (slash == std::string_view::npos ||
        !position.ParseFromArray(detached.data() + slash + 1,
                                 static_cast<int>(detached.size() - slash - 1))) {
      throw gameverse::sdk::Error(StatusCode::kDataLoss,
                                  "unreadable Count position from the previous generation");
    }
    const uint64_t next = std::stoull(std::string(detached.substr(0, slash)));
    return ticker_.start(std::move(stream), next, position.limit(), position.interval_ms());
  }

  std::string save_state() override { return std::to_string(handovers_); }

  void sleep(CallContext&, const pb::SleepRequest& request, UnaryResponder<pb::SleepReply> responder) {
    if (request.duration_ms() > max_sleep_ms_) {
      responder.fail(
          Status(StatusCode::kInvalidArgument, "duration_ms " + std::to_string(request.duration_ms()) +
                                                   " exceeds max_sleep_ms " + std::to_string(max_sleep_ms_)));
      return;
    }
    const auto due = std::chrono::steady_clock::now() + std::chrono::milliseconds(request.duration_ms());
    sleeper_.add(due, request.duration_ms(), std::move(responder));
  }

  Status fail(CallContext&, const pb::FailRequest& request, pb::EchoReply&) {
    if (request.code() != 0) {
      throw gameverse::sdk::Error(static_cast<StatusCode>(request.code()), request.message());
    }
    throw std::runtime_error(request.message());
  }

  Status stats(CallContext&, const pb::StatsRequest&, pb::StatsReply& reply) {
    reply.set_sleeps_started(sleeper_.counters().started);
    reply.set_sleeps_completed(sleeper_.counters().completed);
    reply.set_sleeps_cancelled(sleeper_.counters().cancelled);
    reply.set_instance_id(instance_id_);
    reply.set_handovers(handovers_);
    return Status::ok();
  }

 private:
  int64_t max_stream_messages_;
  int64_t max_sleep_ms_;
  uint64_t handovers_;
  std::string instance_id_ = new_instance_id();
  Sleeper sleeper_;
  Ticker ticker_{instance_id_};
};

}  // namespace

// Tests build a second copy with another version, to hot-reload between two different files.
#ifndef ECHO_VERSION
#define ECHO_VERSION "1.0.0"
#endif

GAMEVERSE_PLUGIN(EchoPlugin, "echo", ECHO_VERSION, "Echoes what it is sent, in every call kind")
