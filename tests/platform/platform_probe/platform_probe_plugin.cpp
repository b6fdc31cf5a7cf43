// The platform probe: timers, metrics, the cache, pub/sub and in-process calls of the SDK behind
// RPCs, for tests. Every message it receives also counts under "seen:<payload>" in the cache, so
// that a test can tell that each reached exactly one generation.
#include <gameverse/sdk/plugin.hpp>

#include <vector>

#include "gameverse/platformprobe/v1/platform_probe.pb.h"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::platformprobe::v1;

class PlatformProbe final : public sdk::Plugin {
 public:
  explicit PlatformProbe(sdk::InitContext& init)
      : host_(init.host),
        relayed_(init.host.counter("probe_relayed_total", "Calls relayed, by outcome", {"outcome"})),
        tick_lateness_(init.host.histogram("probe_tick_lateness_seconds", "How late timer ticks ran", {},
                                           {0.001, 0.005, 0.02, 0.1})) {
    init.host.gauge("probe_generation_started", "1 once a generation started").record(1);
    subscription_ = init.host.subscribe(
        init.host.config_string("topic"),
        [this](std::string_view, std::string_view p) {
          host_.cache().increment("seen:" + std::string(p));
          std::lock_guard lock(mu_);
          received_.emplace_back(p);
        },
        sdk::Run::kBlocking);
  }

  static void describe(sdk::PluginBuilder<PlatformProbe>& b) {
    b.service("gameverse.platformprobe.v1.PlatformProbe")
        .unary_async("Relay", &PlatformProbe::relay, sdk::kPublic)
        .blocking("RelayBlocking", &PlatformProbe::relay_blocking, sdk::kPublic)
        .unary_async("Ticks", &PlatformProbe::ticks, sdk::kPublic)
        .blocking("Cache", &PlatformProbe::cache, sdk::kPublic)
        .blocking("Publish", &PlatformProbe::publish, sdk::kPublic)
        .unary("Received", &PlatformProbe::received, sdk::kPublic);
    b.config_string("topic", "probe", "The topic this plugin subscribes to", sdk::non_empty());
  }

  sdk::Status cache(sdk::CallContext&, const pb::CacheRequest& request, pb::CacheReply& reply) {
    const sdk::Cache cache = host_.cache();
    const std::chrono::milliseconds ttl(request.ttl_ms());
    switch (request.op()) {
      case pb::CacheRequest::GET:
        if (auto value = cache.get(request.key())) {
          reply.set_found(true);
          reply.set_value(*value);
        }
        break;
      case pb::CacheRequest::SET: cache.set(request.key(), request.value(), ttl); break;
      case pb::CacheRequest::DELETE: cache.erase(request.key()); break;
      case pb::CacheRequest::INCREMENT:
        reply.set_counter(cache.increment(request.key(), request.delta(), ttl));
        break;
      case pb::CacheRequest::COMPARE_AND_SET:
        reply.set_swapped(cache.compare_and_set(
            request.key(),
            request.expect_present() ? std::optional<std::string_view>(request.expected()) : std::nullopt,
            request.remove() ? std::nullopt : std::optional<std::string_view>(request.value()), ttl));
        break;
      default: throw sdk::Error(sdk::StatusCode::kInvalidArgument, "unknown cache op");
    }
    return {};
  }

  sdk::Status publish(sdk::CallContext&, const pb::PublishRequest& request, pb::PublishReply&) {
    host_.publish(request.topic(), request.payload());
    return {};
  }

  sdk::Status received(sdk::CallContext&, const pb::ReceivedRequest&, pb::ReceivedReply& reply) {
    std::lock_guard lock(mu_);
    for (const auto& payload : received_) reply.add_payloads(payload);
    return {};
  }

  void relay(sdk::CallContext& context, const pb::RelayRequest& request,
             sdk::UnaryResponder<pb::RelayReply> out) {
    auto responder = std::make_shared<sdk::UnaryResponder<pb::RelayReply>>(std::move(out));
    host_.call_async(request.method(), request.request(), context,
                     std::chrono::milliseconds(request.timeout_ms()),
                     [this, responder](sdk::CallResult result) {
                       relayed_.record(1, {result.status.is_ok() ? "ok" : "error"});
                       if (!result.status.is_ok()) {
                         responder->fail(result.status);
                         return;
                       }
                       pb::RelayReply reply;
                       reply.set_response(result.response);
                       responder->reply(reply);
                     });
  }

  sdk::Status relay_blocking(sdk::CallContext&, const pb::RelayRequest& request, pb::RelayReply& reply) {
    const std::chrono::milliseconds timeout(request.timeout_ms());
    sdk::CallResult result = request.as_plugin()
                                 ? host_.call(request.method(), request.request(), sdk::as_plugin, timeout)
                                 : host_.call(request.method(), request.request(), timeout);
    if (!result.status.is_ok()) return result.status;
    reply.set_response(result.response);
    return {};
  }

  void ticks(sdk::CallContext&, const pb::TicksRequest& request, sdk::UnaryResponder<pb::TicksReply> out) {
    std::lock_guard lock(mu_);
    runs_.push_back(
        std::make_unique<Run>(std::move(out), request.count(),
                              std::chrono::milliseconds(std::max<uint32_t>(request.period_ms(), 1))));
    Run* run = runs_.back().get();
    run->timer = host_.start_timer(run->period, run->period, [this, run] { tick(*run); });
  }

 private:
  // One Ticks call: its responder and its timer, kept until the plugin shuts down.
  struct Run {
    Run(sdk::UnaryResponder<pb::TicksReply> r, uint32_t w, std::chrono::milliseconds p)
        : responder(std::move(r)), want(w), period(p) {}
    sdk::UnaryResponder<pb::TicksReply> responder;
    uint32_t want;
    uint32_t seen = 0;
    std::chrono::milliseconds period;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    sdk::Timer timer;
  };

  void tick(Run& run) {
    ++run.seen;
    const auto due = run.start + run.period * run.seen;
    tick_lateness_.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - due).count());
    if (run.seen < run.want) return;
    pb::TicksReply reply;
    reply.set_ticks(run.seen);
    reply.set_elapsed_ms(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - run.start)
            .count()));
    run.responder.reply(reply);
    run.timer.cancel();  // from its own callback: this run ends, no other follows
  }

  sdk::Host host_;
  sdk::Metric relayed_;
  sdk::Metric tick_lateness_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Run>> runs_;
  std::vector<std::string> received_;
  sdk::Subscription subscription_;  // last: it ends before the members its handler uses
};

}  // namespace

GAMEVERSE_PLUGIN(PlatformProbe, "platform-probe", "1.0.0", "Timers, metrics and calls behind RPCs, for tests")
