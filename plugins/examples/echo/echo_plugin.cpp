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

class EchoPlugin final : public gameverse::sdk::Plugin {
 public:
  explicit EchoPlugin(InitContext& init)
      : max_stream_messages_(init.host.config_int("max_stream_messages")),
        max_sleep_ms_(init.host.config_int("max_sleep_ms")) {
    if (max_stream_messages_ < 1) {
      throw gameverse::sdk::Error(StatusCode::kInvalidArgument, "max_stream_messages must be at least 1");
    }
    init.host.info("echo ready");
  }

  static void describe(PluginBuilder<EchoPlugin>& b) {
    b.unary("/gameverse.echo.v1.Echo/Echo", &EchoPlugin::echo)
        .server_stream("/gameverse.echo.v1.Echo/Expand", &EchoPlugin::expand)
        .client_stream("/gameverse.echo.v1.Echo/Collect", &EchoPlugin::collect)
        .bidi_stream("/gameverse.echo.v1.Echo/Chat", &EchoPlugin::chat)
        .unary_async("/gameverse.echo.v1.Echo/Sleep", &EchoPlugin::sleep)
        .unary("/gameverse.echo.v1.Echo/Fail", &EchoPlugin::fail)
        .unary("/gameverse.echo.v1.Echo/Stats", &EchoPlugin::stats)
        .config_int("max_stream_messages", 100000, "Largest count an Expand call may ask for")
        .config_int("max_sleep_ms", 60000, "Longest duration a Sleep call may ask for");
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

  class Chatter final : public StreamReader<pb::EchoRequest> {
   public:
    explicit Chatter(ServerStream<pb::EchoReply> out) : out_(std::move(out)) {}
    void on_message(const pb::EchoRequest& request) override {
      pb::EchoReply reply;
      reply.set_payload(request.payload());
      reply.set_sequence(++sequence_);
      out_.write(reply);
    }
    void on_half_close() override { out_.finish(); }

   private:
    ServerStream<pb::EchoReply> out_;
    uint64_t sequence_ = 0;
  };

  std::unique_ptr<StreamReader<pb::EchoRequest>> chat(CallContext&, ServerStream<pb::EchoReply> out) {
    return std::make_unique<Chatter>(std::move(out));
  }

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
    return Status::ok();
  }

 private:
  int64_t max_stream_messages_;
  int64_t max_sleep_ms_;
  Sleeper sleeper_;
};

}  // namespace

GAMEVERSE_PLUGIN(EchoPlugin, "echo", "1.0.0", "Echoes what it is sent, in every call kind")
