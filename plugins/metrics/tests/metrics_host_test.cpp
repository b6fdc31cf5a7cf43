// The metrics plugin in the real host, through real gRPC clients (the service's own API and
// OTLP's MetricsService), on SQLite and on PostgreSQL (the server `tools/gv test` starts).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "eventually.hpp"
#include "expect_contains.hpp"
#include "gameverse/metrics/v1/metrics.grpc.pb.h"
#include "host_process.hpp"
#include "loopback.hpp"
#include "npm_client.hpp"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.grpc.pb.h"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::metrics::v1;
namespace collector = opentelemetry::proto::collector::metrics::v1;
namespace otlp = opentelemetry::proto::metrics::v1;

// The host's [admin] token: the operator, who passes every access policy.
constexpr const char* kOperatorToken = "metrics-test-operator-token-01";

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

pb::Measurement counter(const std::string& name, double v, std::map<std::string, std::string> labels = {}) {
  pb::Measurement m;
  m.set_name(name);
  m.set_counter_add(v);
  m.mutable_labels()->insert(labels.begin(), labels.end());
  return m;
}

// A TCP relay on loopback between the host and PostgreSQL that a test can cut (every connection
// closed, new ones refused) and restore on the same port: the store going away and coming back.
class CuttableRelay {
 public:
  explicit CuttableRelay(int target_port) : target_port_(target_port) { listen_on(0); }
  ~CuttableRelay() { cut(); }
  int port() const { return port_; }
  void cut() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    ::close(listener_);
    listener_ = -1;
    for (auto& pump : pumps_) pump.join();
    pumps_.clear();
  }
  void restore() { listen_on(port_); }

 private:
  void listen_on(int port) {
    // Close-on-exec: a host the test forks must not hold the relay's sockets open.
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int yes = 1;
    setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in address = loopback_address(port);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listener_, 64) != 0) {
      throw std::runtime_error("the relay cannot listen on port " + std::to_string(port));
    }
    socklen_t size = sizeof address;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    stop_ = false;
    acceptor_ = std::thread([this] {
      while (!stop_) {
        pollfd p{listener_, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        const int server = connect_to(target_port_);
        if (server < 0) {
          ::close(client);
          continue;
        }
        fcntl(server, F_SETFD, FD_CLOEXEC);
        pumps_.emplace_back([this, client, server] { pump(client, server); });
      }
    });
  }
  // Copies both ways until either side closes or the relay is cut.
  void pump(int a, int b) {
    char buffer[16384];
    while (!stop_) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (poll(p, 2, 20) <= 0) continue;
      bool closed = false;
      for (int i = 0; i < 2 && !closed; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = read(p[i].fd, buffer, sizeof buffer);
        closed = n <= 0 || write(p[1 - i].fd, buffer, static_cast<size_t>(n)) != n;
      }
      if (closed) break;
    }
    ::close(a);
    ::close(b);
  }

  int target_port_;
  int port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // touched by the acceptor only while it runs
};

class MetricsThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    // Metric names of this run: PostgreSQL keeps the records of earlier runs.
    suffix_ = "_" + std::to_string(std::random_device()() % 1'000'000);
    plugin_ = data_.path() / "metrics.so";  // a copy of its own, so a test can rebuild it in place
    std::filesystem::copy_file(GV_PLUGIN_DIR "/metrics.so", plugin_);
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }
  void start(const std::string& plugin_config = "", const std::string& host_config = "") {
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n" + store_ + host_config +
        "[admin]\ntoken = \"" + kOperatorToken + "\"\n[[plugin]]\nname = \"metrics\"\npath = \"" +
        plugin_.string() +
        // Every test records as the operator, and PostgreSQL keeps the names of earlier tests.
        "\"\n[plugin.config]\nflush_interval_s = 1\nflush_delay_s = 0\nmax_names_per_player = 100000\n"
        "max_player_metrics = 100000\n" +
        plugin_config);
    metrics_ = pb::Metrics::NewStub(host_->channel());
    otlp_ = collector::MetricsService::NewStub(host_->channel());
  }
  std::string name(const std::string& base) const { return base + suffix_; }
  // What players Record is named apart: player_...
  std::string pname(const std::string& base) const { return "player_" + name(base); }

  grpc::Status record(const std::vector<pb::Measurement>& measurements, pb::RecordReply* reply = nullptr) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    pb::RecordRequest request;
    for (const auto& m : measurements) *request.add_measurements() = m;
    pb::RecordReply ignored;
    return metrics_->Record(&context, request, reply != nullptr ? reply : &ignored);
  }
  grpc::Status query(const pb::QueryRequest& request, pb::QueryReply* reply) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    return metrics_->Query(&context, request, reply);
  }
  // One aggregate of `metric` over the last `span_s` seconds in one step (of `step_s`), by `by`.
  pb::QueryReply ask(const std::string& metric, pb::Aggregation aggregation, std::vector<std::string> by = {},
                     double percentile = 0, int64_t step_s = 3600) {
    pb::QueryRequest request;
    request.set_metric(metric);
    request.set_end_unix_s(now_s() + 10);
    request.set_start_unix_s(request.end_unix_s() - 2 * step_s + 1);
    request.set_step_s(step_s);
    request.set_aggregation(aggregation);
    request.set_percentile(percentile);
    for (const auto& b : by) request.add_by(b);
    pb::QueryReply reply;
    const grpc::Status status = query(request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply;
  }
  // The sum of every point of every series (a query whose steps may split the data).
  static double total(const pb::QueryReply& reply) {
    double sum = 0;
    for (const auto& s : reply.series()) {
      for (const auto& p : s.points()) sum += p.value();
    }
    return sum;
  }
  static double value_of(const pb::QueryReply& reply, const std::string& label, const std::string& value) {
    for (const auto& s : reply.series()) {
      const auto it = s.labels().find(label);
      if (it != s.labels().end() && it->second == value) {
        double sum = 0;
        for (const auto& p : s.points()) sum += p.value();
        return sum;
      }
    }
    return -1;
  }
  pb::ListSeriesReply list_series(const std::string& prefix) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    pb::ListSeriesRequest request;
    request.set_prefix(prefix);
    pb::ListSeriesReply reply;
    const grpc::Status status = metrics_->ListSeries(&context, request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply;
  }
  std::string metrics_page() {
    return run_command("curl -sS --max-time 30 http://127.0.0.1:" + std::to_string(host_->http_port()) +
                       "/metrics")
        .output;
  }
  // One gauge point of `metric` now, with these attributes.
  static void add_gauge(collector::ExportMetricsServiceRequest& request, const std::string& metric,
                        const std::map<std::string, std::string>& attributes) {
    otlp::Metric* m = request.add_resource_metrics()->add_scope_metrics()->add_metrics();
    m->set_name(metric);
    otlp::NumberDataPoint* p = m->mutable_gauge()->add_data_points();
    p->set_time_unix_nano(now_ns());
    p->set_as_double(1);
    for (const auto& [k, v] : attributes) {
      auto* a = p->add_attributes();
      a->set_key(k);
      a->mutable_value()->set_string_value(v);
    }
  }
  grpc::Status export_metrics(const collector::ExportMetricsServiceRequest& request,
                              collector::ExportMetricsServiceResponse* reply) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    return otlp_->Export(&context, request, reply);
  }

  TempDir data_;
  std::filesystem::path plugin_;
  std::string store_;
  std::string suffix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::Metrics::Stub> metrics_;
  std::unique_ptr<collector::MetricsService::Stub> otlp_;
};

TEST_P(MetricsThroughTheHost, RecordedCountersGaugesAndEventsQueryBackAndOutliveARestart) {
  start();
  const std::string kills = pname("kills");
  const std::string match = pname("match_finished");
  const std::string online = pname("players_online");
  pb::Measurement event;
  event.set_name(match);
  event.mutable_labels()->insert({{"mode", "duel"}, {"map", "dust"}});
  event.mutable_event()->set_duration_s(90);
  pb::Measurement event2 = event;
  event2.mutable_event()->set_duration_s(300);
  (*event2.mutable_labels())["mode"] = "team";
  pb::Measurement gauge;
  gauge.set_name(online);
  gauge.set_gauge_set(40);
  pb::RecordReply reply;
  ASSERT_TRUE(record({counter(kills, 2, {{"mode", "duel"}}), counter(kills, 3, {{"mode", "team"}}),
                      counter(kills, 5, {{"mode", "duel"}}), event, event2, gauge},
                     &reply)
                  .ok());
  EXPECT_EQ(reply.accepted(), 6u);
  gauge.set_gauge_set(60);
  ASSERT_TRUE(record({gauge}).ok());

  auto check = [&] {
    EXPECT_EQ(total(ask(kills, pb::AGGREGATION_SUM)), 10);
    const pb::QueryReply by_mode = ask(kills, pb::AGGREGATION_SUM, {"mode"});
    EXPECT_EQ(value_of(by_mode, "mode", "duel"), 7);
    EXPECT_EQ(value_of(by_mode, "mode", "team"), 3);
    EXPECT_DOUBLE_EQ(total(ask(kills, pb::AGGREGATION_RATE)), 10.0 / 3600);
    EXPECT_DOUBLE_EQ(total(ask(kills, pb::AGGREGATION_AVG)), 10.0 / 3);
    EXPECT_EQ(total(ask(match, pb::AGGREGATION_COUNT)), 2);
    EXPECT_EQ(total(ask(match + "_duration_seconds", pb::AGGREGATION_AVG)), 195);
    // Observations 90 and 300 in the buckets (60,120] and (120,300]: the median is 120.
    EXPECT_EQ(total(ask(match + "_duration_seconds", pb::AGGREGATION_PERCENTILE, {}, 50)), 120);
    EXPECT_EQ(total(ask(match + "_duration_seconds", pb::AGGREGATION_PERCENTILE, {}, 100)), 300);
    EXPECT_EQ(total(ask(online, pb::AGGREGATION_MAX)), 60);
    EXPECT_EQ(total(ask(online, pb::AGGREGATION_AVG)), 50);
  };
  check();  // from the windows still in memory and those stored
  ASSERT_EQ(host_->stop(), 0);
  start();
  check();  // from the store alone
  pb::QueryReply fine = ask(kills, pb::AGGREGATION_SUM, {}, 0, 10);
  EXPECT_EQ(fine.resolution(), "10s");
  EXPECT_EQ(ask(kills, pb::AGGREGATION_SUM, {}, 0, 60).resolution(), "1m");
  EXPECT_EQ(ask(kills, pb::AGGREGATION_SUM, {}, 0, 3600).resolution(), "1h");
  EXPECT_EQ(total(ask(kills, pb::AGGREGATION_SUM, {}, 0, 60)), 10);

  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
  pb::ListSeriesRequest list;
  list.set_prefix(kills);
  pb::ListSeriesReply listed;
  ASSERT_TRUE(metrics_->ListSeries(&context, list, &listed).ok());
  ASSERT_EQ(listed.metrics_size(), 1);
  EXPECT_EQ(listed.metrics(0).kind(), pb::KIND_COUNTER);
  EXPECT_EQ(listed.metrics(0).label_names(0), "mode");
}

TEST_P(MetricsThroughTheHost, BadNamesAndLabelsAreRefusedWithTheFieldNamed) {
  start();
  grpc::Status s = record({counter(pname("ok"), 1), counter("player_x.kills", 1)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      s.error_message(),
      "measurements[1].name 'player_x.kills' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
  s = record({counter(pname("ok"), 1, {{"map-name", "x"}})});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "measurements[0] label 'map-name' is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)");
  s = record({counter(pname("ok"), -1)});
  EXPECT_EQ(s.error_message(), "measurements[0].counter_add is negative; a counter only goes up");
  pb::Measurement empty;
  empty.set_name(pname("ok"));
  s = record({empty});
  EXPECT_EQ(s.error_message(),
            "measurements[0] has no value: set counter_add, gauge_set, histogram_observe or event");
  ASSERT_TRUE(record({counter(pname("ok"), 1)}).ok());
  pb::Measurement as_gauge;
  as_gauge.set_name(pname("ok"));
  as_gauge.set_gauge_set(1);
  s = record({as_gauge});
  EXPECT_EQ(s.error_message(),
            "measurements[0]: metric '" + pname("ok") + "' is a counter; it cannot take a gauge value");
  EXPECT_EQ(total(ask(pname("ok"), pb::AGGREGATION_SUM)), 1) << "a refused batch left something behind";

  // Anonymous callers cannot record; queries need the metrics role.
  grpc::ClientContext anonymous;
  pb::RecordReply reply;
  pb::RecordRequest request;
  *request.add_measurements() = counter(pname("ok"), 1);
  EXPECT_EQ(metrics_->Record(&anonymous, request, &reply).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  pb::QueryRequest q;
  q.set_metric(pname("ok"));
  q.set_step_s(15);
  q.set_aggregation(pb::AGGREGATION_SUM);
  pb::QueryReply qr;
  s = query(q, &qr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "step_s is 15; it must be a positive multiple of 10");
  q.set_step_s(10);
  q.set_aggregation(pb::AGGREGATION_PERCENTILE);
  s = query(q, &qr);
  EXPECT_EQ(s.error_message(),
            "aggregation percentile needs a histogram; '" + pname("ok") + "' is a counter");
}

TEST_P(MetricsThroughTheHost, AFloodOfUniqueLabelsIsRefusedNamingTheLimitAndNotStored) {
  start(
      "max_series_per_metric = 5\nmax_measurements_per_player_per_minute = 40\n"
      "max_points_per_client_per_minute = 12\n");
  const std::string metric = pname("shots");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(record({counter(metric, 1, {{"player", std::to_string(i)}})}).ok());
  std::vector<pb::Measurement> flood;
  for (int i = 5; i < 25; ++i) flood.push_back(counter(metric, 1, {{"player", std::to_string(i)}}));
  grpc::Status s = record(flood);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(s.error_message(),
                  "metric '" + metric + "' has 5 series, its limit (max_series_per_metric = 5)");
  EXPECT_TRUE(record({counter(metric, 1, {{"player", "0"}})}).ok()) << "a known series is still taken";
  EXPECT_EQ(total(ask(metric, pb::AGGREGATION_SUM)), 6);
  EXPECT_EQ(ask(metric, pb::AGGREGATION_SUM, {"player"}).series_size(), 5);

  // The same flood over OTLP: each refused point counted in partial_success.
  collector::ExportMetricsServiceRequest request;
  otlp::Metric* m = request.add_resource_metrics()->add_scope_metrics()->add_metrics();
  m->set_name(name("otlp_shots"));
  m->mutable_gauge();
  for (int i = 0; i < 8; ++i) {
    otlp::NumberDataPoint* p = m->mutable_gauge()->add_data_points();
    p->set_time_unix_nano(now_ns());
    p->set_as_int(i);
    auto* a = p->add_attributes();
    a->set_key("player");
    a->mutable_value()->set_string_value(std::to_string(i));
  }
  collector::ExportMetricsServiceResponse reply;
  const grpc::Status exported = export_metrics(request, &reply);
  ASSERT_TRUE(exported.ok()) << exported.error_message();
  EXPECT_EQ(reply.partial_success().rejected_data_points(), 3);
  EXPECT_CONTAINS(reply.partial_success().error_message(), "max_series_per_metric = 5");
  // The client's rate: 12 data points a minute, 8 used.
  const grpc::Status over_rate = export_metrics(request, &reply);
  EXPECT_EQ(over_rate.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(over_rate.error_message(), "more than max_points_per_client_per_minute = 12");

  // The per-player rate: 40 measurements a minute, 26 used.
  std::vector<pb::Measurement> many(20, counter(metric, 1, {{"player", "1"}}));
  s = record(many);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(s.error_message(), "more than max_measurements_per_player_per_minute = 40");
}

// OTLP sums (cumulative, with a reset), gauges and histograms from a C++ OTLP client; what is
// refused comes back in partial_success.
TEST_P(MetricsThroughTheHost, OtlpExportConvertsCumulativeToDeltasAndReportsRefusedPoints) {
  start();
  const uint64_t start_ns = now_ns();
  auto sum_request = [&](uint64_t series_start, int64_t value) {
    collector::ExportMetricsServiceRequest request;
    auto* rm = request.add_resource_metrics();
    auto* attr = rm->mutable_resource()->add_attributes();
    attr->set_key("service.name");
    attr->mutable_value()->set_string_value("game-server");
    auto* sm = rm->add_scope_metrics();
    otlp::Metric* sum = sm->add_metrics();
    sum->set_name(name("requests"));
    sum->mutable_sum()->set_is_monotonic(true);
    sum->mutable_sum()->set_aggregation_temporality(otlp::AGGREGATION_TEMPORALITY_CUMULATIVE);
    otlp::NumberDataPoint* p = sum->mutable_sum()->add_data_points();
    p->set_start_time_unix_nano(series_start);
    p->set_time_unix_nano(now_ns());
    p->set_as_int(value);
    otlp::Metric* bad = sm->add_metrics();
    bad->set_name("http.server.requests");
    bad->mutable_gauge()->add_data_points()->set_as_double(1);
    bad->mutable_gauge()->mutable_data_points(0)->set_time_unix_nano(now_ns());
    otlp::Metric* h = sm->add_metrics();
    h->set_name(name("latency_seconds"));
    h->mutable_histogram()->set_aggregation_temporality(otlp::AGGREGATION_TEMPORALITY_CUMULATIVE);
    otlp::HistogramDataPoint* hp = h->mutable_histogram()->add_data_points();
    hp->set_start_time_unix_nano(series_start);
    hp->set_time_unix_nano(now_ns());
    for (double b : {0.1, 1.0}) hp->add_explicit_bounds(b);
    // value observations: each export adds `value` observations in (0.1, 1].
    hp->add_bucket_counts(0);
    hp->add_bucket_counts(static_cast<uint64_t>(value));
    hp->add_bucket_counts(0);
    hp->set_count(static_cast<uint64_t>(value));
    hp->set_sum(0.5 * static_cast<double>(value));
    return request;
  };
  collector::ExportMetricsServiceResponse reply;
  ASSERT_TRUE(export_metrics(sum_request(start_ns, 5), &reply).ok());
  EXPECT_EQ(reply.partial_success().rejected_data_points(), 1);
  EXPECT_EQ(reply.partial_success().error_message(),
            "metric name 'http.server.requests' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
  ASSERT_TRUE(export_metrics(sum_request(start_ns, 8), &reply).ok());
  ASSERT_TRUE(export_metrics(sum_request(start_ns + 1, 2), &reply).ok()) << "a reset: a new start time";
  EXPECT_EQ(total(ask(name("requests"), pb::AGGREGATION_SUM)), 10);
  EXPECT_EQ(total(ask(name("latency_seconds"), pb::AGGREGATION_COUNT)), 10);
  EXPECT_DOUBLE_EQ(total(ask(name("latency_seconds"), pb::AGGREGATION_AVG)), 0.5);
  const double p50 = total(ask(name("latency_seconds"), pb::AGGREGATION_PERCENTILE, {}, 50));
  EXPECT_GT(p50, 0.1);
  EXPECT_LE(p50, 1.0);
}

TEST_P(MetricsThroughTheHost, AggregatesAppearOnTheHostsMetricsPage) {
  if (std::system("command -v curl > /dev/null 2>&1") != 0) GTEST_SKIP() << "curl is not installed";
  start("expose_player_metrics = true\n", "[http]\nlisten = \"127.0.0.1:0\"\n");
  ASSERT_TRUE(record({counter(pname("deaths"), 3, {{"map", "dust"}})}).ok());
  const std::string text =
      run_command("curl -sS --max-time 30 http://127.0.0.1:" + std::to_string(host_->http_port()) +
                  "/metrics")
          .output;
  EXPECT_CONTAINS(text, "game_" + pname("deaths") + "{plugin=\"metrics\",map=\"dust\"} 3\n");
}

// A reload of the metrics plugin while clients record: every acknowledged measurement is counted
// once, by the old generation's hand-over or its last flush.
TEST_P(MetricsThroughTheHost, AReloadUnderIngestLosesNothingAcknowledged) {
  start("max_measurements_per_player_per_minute = 1000000\n");
  const std::string metric = pname("ticks");
  std::atomic<bool> stop{false};
  std::atomic<int64_t> acked{0}, attempted{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      auto stub = pb::Metrics::NewStub(host_->channel());
      while (!stop) {
        grpc::ClientContext context;
        context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
        pb::RecordRequest request;
        *request.add_measurements() = counter(metric, 1, {{"client", std::to_string(c)}});
        pb::RecordReply reply;
        ++attempted;
        if (stub->Record(&context, request, &reply).ok()) ++acked;
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return acked > 200; }, std::chrono::seconds(60)));
  std::ofstream(plugin_, std::ios::app | std::ios::binary) << '\n';  // a new build of the same code
  host_->signal(SIGHUP);
  const bool reloaded =
      eventually([&] { return host_->log().find("plugin 'metrics' generation 2") != std::string::npos; },
                 std::chrono::seconds(60));
  const int64_t at_reload = acked;
  eventually([&] { return acked > at_reload + 200; }, std::chrono::seconds(30));
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(reloaded) << host_->log();
  // What reached the old generation after its hand-over is stored when it retires.
  ASSERT_TRUE(eventually(
      [&] { return host_->log().find("plugin 'metrics' generation 1 retired") != std::string::npos; },
      std::chrono::seconds(60)))
      << host_->log();
  const double counted = total(ask(metric, pb::AGGREGATION_SUM));
  EXPECT_GE(counted, static_cast<double>(acked.load())) << "acknowledged measurements were lost";
  EXPECT_LE(counted, static_cast<double>(attempted.load())) << "measurements were counted twice";
  // And once more after the host stopped: what is stored alone.
  ASSERT_EQ(host_->stop(), 0);
  start();
  const double stored = total(ask(metric, pb::AGGREGATION_SUM));
  EXPECT_GE(stored, static_cast<double>(acked.load()));
  EXPECT_LE(stored, static_cast<double>(attempted.load()));
}

// Windows of each resolution are kept for their own retention: a point two hours old is gone
// from the 10-second windows (kept 1 h here) and still in the 1-minute ones.
TEST_P(MetricsThroughTheHost, WindowsPastTheirResolutionsRetentionAreDeleted) {
  start("max_lateness_s = 86400\nretention_10s_h = 1\nretention_interval_s = 1\n");
  const std::string metric = name("old_points");
  auto point = [&](uint64_t time_ns, int64_t value) {
    collector::ExportMetricsServiceRequest request;
    otlp::Metric* m = request.add_resource_metrics()->add_scope_metrics()->add_metrics();
    m->set_name(metric);
    m->mutable_sum()->set_is_monotonic(true);
    m->mutable_sum()->set_aggregation_temporality(otlp::AGGREGATION_TEMPORALITY_DELTA);
    otlp::NumberDataPoint* p = m->mutable_sum()->add_data_points();
    p->set_start_time_unix_nano(time_ns - 1);
    p->set_time_unix_nano(time_ns);
    p->set_as_int(value);
    collector::ExportMetricsServiceResponse reply;
    const grpc::Status status = export_metrics(request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(reply.partial_success().rejected_data_points(), 0) << reply.partial_success().error_message();
  };
  point(now_ns() - 7200ull * 1000000000ull, 4);
  point(now_ns(), 1);
  auto sum_over_3h = [&](int64_t step) {
    pb::QueryRequest request;
    request.set_metric(metric);
    request.set_end_unix_s(now_s() + 10);
    request.set_start_unix_s(request.end_unix_s() - 3 * 3600);
    request.set_step_s(step);
    request.set_aggregation(pb::AGGREGATION_SUM);
    pb::QueryReply reply;
    const grpc::Status status = query(request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    for (const auto& series : reply.series()) {
      for (const auto& p : series.points()) EXPECT_EQ(p.unix_s() % step, 0) << "a step that is not aligned";
    }
    return total(reply);
  };
  EXPECT_TRUE(eventually([&] { return sum_over_3h(10) == 1; }, std::chrono::seconds(30)))
      << "the 10-second windows still hold " << sum_over_3h(10);
  EXPECT_EQ(sum_over_3h(60), 5) << "the 1-minute windows lost what they keep for a week";
  EXPECT_EQ(sum_over_3h(3600), 5);
}

// PostgreSQL going away: once a flush fails, Record and Export answer UNAVAILABLE (clients
// retry); acknowledged data waits in memory and is stored when the server is back.
TEST_P(MetricsThroughTheHost, WhileTheStoreIsDownNewDataIsUnavailableAndNothingAcknowledgedIsLost) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "the store is taken away through a relay to PostgreSQL";
  const std::string url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
  // postgresql://user@127.0.0.1:PORT/db: the same through the relay.
  const size_t colon = url.rfind(':');
  const size_t slash = url.find('/', colon);
  CuttableRelay relay(std::stoi(url.substr(colon + 1, slash - colon - 1)));
  store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + url.substr(0, colon + 1) +
           std::to_string(relay.port()) + url.substr(slash) + "\"\n";
  start("max_measurements_per_player_per_minute = 1000000\n");
  const std::string metric = pname("while_down");
  int64_t acked = 0;
  ASSERT_TRUE(record({counter(metric, 1)}).ok());
  ++acked;
  relay.cut();
  grpc::Status refused;
  // The next flush of a closed window finds the store gone.
  ASSERT_TRUE(eventually(
      [&] {
        refused = record({counter(metric, 1)});
        if (refused.ok()) ++acked;
        return refused.error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      std::chrono::seconds(60)))
      << refused.error_message();
  EXPECT_CONTAINS(refused.error_message(), "the metrics store is unavailable");
  collector::ExportMetricsServiceRequest request;
  otlp::Metric* m = request.add_resource_metrics()->add_scope_metrics()->add_metrics();
  m->set_name(name("while_down_gauge"));
  m->mutable_gauge()->add_data_points()->set_as_double(1);
  m->mutable_gauge()->mutable_data_points(0)->set_time_unix_nano(now_ns());
  collector::ExportMetricsServiceResponse reply;
  EXPECT_EQ(export_metrics(request, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);

  relay.restore();
  ASSERT_TRUE(eventually([&] { return record({counter(metric, 1)}).ok(); }, std::chrono::seconds(60)))
      << "the service did not take data again after the store came back";
  ++acked;
  EXPECT_EQ(total(ask(metric, pb::AGGREGATION_SUM)), acked);
  ASSERT_EQ(host_->stop(), 0);
  start();
  EXPECT_EQ(total(ask(metric, pb::AGGREGATION_SUM)), acked) << "acknowledged data was not stored";
}

// More new metrics in one call than the store takes in one batch: stored in several, and the
// service keeps taking data across the flushes and keeps the metrics over a restart.
TEST_P(MetricsThroughTheHost, ARecordOfMoreNewMetricsThanAStoreBatchIsStoredAndTheServiceStaysUp) {
  start();
  const std::string prefix = pname("wide") + "_";
  std::vector<pb::Measurement> many;
  for (int i = 0; i < 600; ++i) many.push_back(counter(prefix + std::to_string(i), 1));
  ASSERT_TRUE(record(many).ok());
  for (int flushes = 0; flushes < 3; ++flushes) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past a flush (every second)
    const grpc::Status s = record({counter(pname("after_wide"), 1)});
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(host_->stop(), 0);
  start();
  EXPECT_EQ(list_series(prefix).metrics_size(), 600) << "metrics made by the call were not stored";
  EXPECT_EQ(total(ask(prefix + "599", pb::AGGREGATION_SUM)), 1);
}

// A record the store refuses for its size is dropped and logged; it does not make the store look
// down for everything else.
TEST_P(MetricsThroughTheHost, ARecordTheStoreRefusesForItsSizeIsSetAsideAndTheRestIsTaken) {
  store_ += (store_.empty() ? "[store]\n" : "") + std::string("max_value_bytes = 1500\n");
  start();
  std::map<std::string, std::string> wide_labels;
  for (char c = 'a'; c < 'a' + 8; ++c) wide_labels[std::string(190, c)] = "v";
  ASSERT_TRUE(record({counter(pname("too_wide"), 1, wide_labels)}).ok());
  for (int flushes = 0; flushes < 3; ++flushes) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past a flush (every second)
    const grpc::Status s = record({counter(pname("fine"), 1)});
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(host_->stop(), 0);
  EXPECT_CONTAINS(host_->log(), "for what they hold; they are dropped");
  start();
  EXPECT_EQ(total(ask(pname("fine"), pb::AGGREGATION_SUM)), 3);
}

// Histograms with too many bounds, points with too many attributes and resources with a too large
// identity are refused point by point, naming the limit, before they are copied; the rest of the
// request is taken.
TEST_P(MetricsThroughTheHost, OversizedHistogramsAndResourcesAreRefusedNamingTheLimit) {
  start();
  collector::ExportMetricsServiceRequest request;
  otlp::Metric* h = request.add_resource_metrics()->add_scope_metrics()->add_metrics();
  h->set_name(name("wide_histogram"));
  h->mutable_histogram()->set_aggregation_temporality(otlp::AGGREGATION_TEMPORALITY_DELTA);
  otlp::HistogramDataPoint* dp = h->mutable_histogram()->add_data_points();
  dp->set_time_unix_nano(now_ns());
  for (int i = 0; i < 300; ++i) dp->add_explicit_bounds(i);
  for (int i = 0; i < 301; ++i) dp->add_bucket_counts(0);
  add_gauge(request, name("from_a_big_resource"), {});
  auto* attribute = request.mutable_resource_metrics(1)->mutable_resource()->add_attributes();
  attribute->set_key("service.name");
  attribute->mutable_value()->set_string_value(std::string(100 * 1024, 'x'));
  for (int i = 0; i < 9; ++i) {
    *request.mutable_resource_metrics(1)
         ->mutable_scope_metrics(0)
         ->mutable_metrics(0)
         ->mutable_gauge()
         ->add_data_points() = request.resource_metrics(1).scope_metrics(0).metrics(0).gauge().data_points(0);
  }
  std::map<std::string, std::string> many;
  for (int i = 0; i < 9; ++i) many["a" + std::to_string(i)] = "v";
  add_gauge(request, name("many_attributes"), many);
  add_gauge(request, name("fine_gauge"), {});
  collector::ExportMetricsServiceResponse reply;
  const grpc::Status s = export_metrics(request, &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.partial_success().rejected_data_points(), 12);
  EXPECT_CONTAINS(reply.partial_success().error_message(), "300 explicit_bounds; at most 256");
  EXPECT_CONTAINS(reply.partial_success().error_message(), "at most 64 attributes of 4096 bytes");
  EXPECT_CONTAINS(reply.partial_success().error_message(), "a data point has 9 attributes; at most 8");
  EXPECT_EQ(list_series(name("wide_histogram")).metrics_size(), 0);
  EXPECT_EQ(list_series(name("from_a_big_resource")).metrics_size(), 0);
  EXPECT_EQ(list_series(name("fine_gauge")).metrics_size(), 1);
}

// A player cannot take an exported metric's name first (with another kind or labels): what
// players Record is named player_..., a prefix Export refuses.
TEST_P(MetricsThroughTheHost, PlayersCannotTakeTheNameOfAnExportedMetric) {
  start();
  const grpc::Status squat = record({counter(name("squatted"), 1, {{"x", "1"}})});
  EXPECT_EQ(squat.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(squat.error_message(),
                  "measurements[0].name '" + name("squatted") + "' does not begin with 'player_'");
  collector::ExportMetricsServiceRequest request;
  add_gauge(request, name("squatted"), {});
  add_gauge(request, pname("from_telemetry"), {});
  collector::ExportMetricsServiceResponse reply;
  ASSERT_TRUE(export_metrics(request, &reply).ok());
  EXPECT_EQ(reply.partial_success().rejected_data_points(), 1);
  EXPECT_CONTAINS(reply.partial_success().error_message(),
                  "names beginning with 'player_' are kept for what players Record");
  ASSERT_EQ(list_series(name("squatted")).metrics_size(), 1);
  EXPECT_EQ(list_series(name("squatted")).metrics(0).kind(), pb::KIND_GAUGE);
}

// What players Record stays off /metrics by default (the values are theirs); what telemetry
// senders export is exposed, up to max_exposed_bytes.
TEST_P(MetricsThroughTheHost, PlayersSeriesStayOffTheMetricsPageAndExposureIsBoundedInBytes) {
  if (std::system("command -v curl > /dev/null 2>&1") != 0) GTEST_SKIP() << "curl is not installed";
  start("max_exposed_bytes = 2048\n", "[http]\nlisten = \"127.0.0.1:0\"\n");
  ASSERT_TRUE(record({counter(pname("said"), 1, {{"text", "anything"}})}).ok());
  collector::ExportMetricsServiceRequest request;
  for (int i = 0; i < 40; ++i)
    add_gauge(request, name("exported"), {{"node", std::to_string(i) + std::string(100, 'n')}});
  collector::ExportMetricsServiceResponse reply;
  ASSERT_TRUE(export_metrics(request, &reply).ok());
  EXPECT_EQ(reply.partial_success().rejected_data_points(), 0);
  const std::string page = metrics_page();
  EXPECT_EQ(page.find(pname("said")), std::string::npos) << "a player's series is on /metrics";
  EXPECT_CONTAINS(page, "node=\"0" + std::string(100, 'n') + "\"");
  EXPECT_EQ(page.find("node=\"39" + std::string(100, 'n') + "\""), std::string::npos)
      << "/metrics grew past max_exposed_bytes";
  EXPECT_EQ(total(ask(name("exported"), pb::AGGREGATION_COUNT)), 40) << "every series is still stored";
}

// A client nobody here wrote: OpenTelemetry's Node.js SDK and its OTLP/gRPC exporter, whose
// cumulative counter, gauge and histogram read back through the query API.
TEST_P(MetricsThroughTheHost, OpenTelemetrysNodeExporterIsReadBack) {
  ASSERT_EQ(run_command("node --version").exit_code, 0) << "node is missing: `tools/gv deps` installs it";
  const std::filesystem::path work = GV_NPM_WORK_DIR;
  const NpmInstall install = install_npm_client(GV_NPM_CLIENT_DIR, work, {"otlp_client.mjs"});
  if (install.registry_unreachable) GTEST_SKIP() << "the npm registry is unreachable:\n" << install.output;
  ASSERT_TRUE(install.ok) << "npm ci failed:\n" << install.output;
  start();
  const std::string prefix = name("node");
  const CommandRun client = run_command("node '" + (work / "otlp_client.mjs").string() + "' " +
                                        host_->address() + " " + prefix + " " + kOperatorToken);
  ASSERT_EQ(client.exit_code, 0) << client.output;
  const pb::QueryReply orders = ask(prefix + "_orders", pb::AGGREGATION_SUM, {"mode"});
  EXPECT_EQ(value_of(orders, "mode", "duel"), 5);
  EXPECT_EQ(value_of(orders, "mode", "team"), 4);
  EXPECT_EQ(total(ask(prefix + "_queue_depth", pb::AGGREGATION_MAX)), 17);
  EXPECT_EQ(total(ask(prefix + "_match_seconds", pb::AGGREGATION_COUNT)), 3);
  EXPECT_EQ(total(ask(prefix + "_match_seconds", pb::AGGREGATION_AVG)), 35);
  // 5 in (1,10], 50 and 50 in (10,100]: the median falls in (10,100].
  const double p50 = total(ask(prefix + "_match_seconds", pb::AGGREGATION_PERCENTILE, {}, 50));
  EXPECT_GT(p50, 10);
  EXPECT_LE(p50, 100);
}

INSTANTIATE_TEST_SUITE_P(Backends, MetricsThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
