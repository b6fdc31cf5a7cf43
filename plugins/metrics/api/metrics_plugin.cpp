// gameverse.metrics.v1.Metrics and OTLP's MetricsService/Export: maps both onto the metrics
// domain, stores closed windows on a blocking timer, deletes them after their retention, and
// exposes what arrives on the host's /metrics.
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "api/otlp.hpp"
#include "domain/metrics_service.hpp"
#include "domain/query.hpp"
#include "gameverse/metrics/v1/metrics.pb.h"
#include "infrastructure/store_windows.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::metrics::v1;
namespace m = gameverse::metrics;
namespace collector = opentelemetry::proto::collector::metrics::v1;
using sdk::answer;

std::vector<double> parse_bounds(const std::string& text) {
  std::vector<double> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      size_t used = 0;
      const double v = std::stod(item, &used);
      if (item.find_first_not_of(" \t", used) != std::string::npos) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw sdk::Error(
          sdk::StatusCode::kInvalidArgument,
          "histogram_buckets: '" + item + "' is not a number (a comma-separated list is expected)");
    }
  }
  if (out.size() > m::kMaxHistogramBounds) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument, "histogram_buckets has " +
                                                            std::to_string(out.size()) + " bounds; at most " +
                                                            std::to_string(m::kMaxHistogramBounds));
  }
  if (out.empty() || std::adjacent_find(out.begin(), out.end(), std::greater_equal<double>()) != out.end()) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument, "histogram_buckets must be increasing numbers");
  }
  return out;
}

m::Settings settings_from(const sdk::Host& host) {
  m::Settings s;
  s.limits.per_metric = static_cast<size_t>(host.config_int("max_series_per_metric"));
  s.limits.per_sender = static_cast<size_t>(host.config_int("max_series_per_sender"));
  s.limits.total = static_cast<size_t>(host.config_int("max_series"));
  s.max_metrics = static_cast<size_t>(host.config_int("max_metrics"));
  s.max_player_metrics = static_cast<size_t>(host.config_int("max_player_metrics"));
  s.max_names_per_player = static_cast<size_t>(host.config_int("max_names_per_player"));
  s.max_labels = static_cast<size_t>(host.config_int("max_labels"));
  s.max_label_value_bytes = static_cast<size_t>(host.config_int("max_label_value_bytes"));
  s.histogram_bounds = parse_bounds(host.config_string("histogram_buckets"));
  s.resolutions = {{"10s", "w10s", 10, host.config_int("retention_10s_h") * 3600},
                   {"1m", "w1m", 60, host.config_int("retention_1m_h") * 3600},
                   {"1h", "w1h", 3600, host.config_int("retention_1h_d") * 86400}};
  s.flush_delay_s = host.config_int("flush_delay_s");
  s.max_lateness_s = host.config_int("max_lateness_s");
  s.series_idle_s = host.config_int("series_idle_s");
  s.max_pending_entries = static_cast<size_t>(host.config_int("max_pending_entries"));
  s.max_pending_bytes = static_cast<size_t>(host.config_int("max_pending_bytes"));
  s.max_cumulative_bytes = static_cast<size_t>(host.config_int("max_cumulative_bytes"));
  s.expose_recorded = host.config_bool("expose_player_metrics");
  return s;
}

// Aggregates on the host's /metrics, each metric as prometheus_prefix + its name with its own
// labels. A name the registry refuses (taken by another plugin) is logged once and not exposed.
class HostExposition final : public m::Exposition {
 public:
  HostExposition(sdk::Host host, std::string prefix, size_t max_series, size_t max_bytes)
      : host_(host), prefix_(std::move(prefix)), max_series_(max_series), max_bytes_(max_bytes) {}
  void record(const m::Family& family, const m::Labels& labels, double value) override {
    // The host's registry keeps every series it was given: past max_series or max_exposed_bytes
    // (series that the limits have forgotten as idle still count), new series are stored and
    // queryable only.
    std::string key = m::series_key(family.name, labels);
    if (!exposed_.contains(key)) {
      // A series' lines on the page: one, or a histogram's buckets, _sum and _count.
      const size_t lines = family.kind == m::Kind::kHistogram ? family.bounds.size() + 3 : 1;
      const size_t bytes = lines * (prefix_.size() + key.size() + 48);
      if (exposed_.size() >= max_series_ || exposed_bytes_ + bytes > max_bytes_) {
        if (!warned_full_)
          host_.warn(
              "metrics: /metrics holds max_series series or max_exposed_bytes; new series are not exposed");
        warned_full_ = true;
        return;
      }
      exposed_bytes_ += bytes;
      exposed_.insert(std::move(key));
    }
    auto it = metrics_.find(family.name);
    if (it == metrics_.end()) it = metrics_.emplace(family.name, register_family(family)).first;
    if (!it->second) return;
    std::vector<std::string> values;
    values.reserve(labels.size());
    for (const auto& [name, v] : labels) values.push_back(v);
    it->second->record_values(value, values);
  }

 private:
  std::optional<sdk::Metric> register_family(const m::Family& f) const {
    const std::string name = prefix_ + f.name;
    std::vector<const char*> label_names;
    for (const auto& l : f.label_names) label_names.push_back(l.c_str());
    const std::string help = std::string("Game ") + m::kind_name(f.kind) + " " + f.name + " (metrics plugin)";
    try {
      gv_metric_kind kind = f.kind == m::Kind::kCounter ? GV_METRIC_COUNTER
                            : f.kind == m::Kind::kGauge ? GV_METRIC_GAUGE
                                                        : GV_METRIC_HISTOGRAM;
      return register_with(kind, name, help, label_names, f.bounds);
    } catch (const sdk::Error& e) {
      host_.warn("metrics: '" + f.name + "' is not exposed on /metrics: " + e.what());
      return std::nullopt;
    }
  }
  sdk::Metric register_with(gv_metric_kind kind, const std::string& name, const std::string& help,
                            const std::vector<const char*>& labels, const std::vector<double>& bounds) const {
    // Host::counter/gauge/histogram take an initializer list; the labels here are known at run time.
    switch (labels.size()) {
#define GV_LABELS_CASE(N, ...) \
  case N: return make(kind, name, help, {__VA_ARGS__}, bounds);
      GV_LABELS_CASE(0)
      GV_LABELS_CASE(1, labels[0])
      GV_LABELS_CASE(2, labels[0], labels[1])
      GV_LABELS_CASE(3, labels[0], labels[1], labels[2])
      GV_LABELS_CASE(4, labels[0], labels[1], labels[2], labels[3])
      GV_LABELS_CASE(5, labels[0], labels[1], labels[2], labels[3], labels[4])
      GV_LABELS_CASE(6, labels[0], labels[1], labels[2], labels[3], labels[4], labels[5])
      GV_LABELS_CASE(7, labels[0], labels[1], labels[2], labels[3], labels[4], labels[5], labels[6])
      GV_LABELS_CASE(8, labels[0], labels[1], labels[2], labels[3], labels[4], labels[5], labels[6],
                     labels[7])
#undef GV_LABELS_CASE
      default: throw sdk::Error(sdk::StatusCode::kInvalidArgument, "more than 8 labels");
    }
  }
  sdk::Metric make(gv_metric_kind kind, const std::string& name, const std::string& help,
                   std::initializer_list<const char*> labels, const std::vector<double>& bounds) const {
    switch (kind) {
      case GV_METRIC_COUNTER: return host_.counter(name.c_str(), help.c_str(), labels);
      case GV_METRIC_GAUGE: return host_.gauge(name.c_str(), help.c_str(), labels);
      default: return host_.histogram(name.c_str(), help.c_str(), labels, bounds);
    }
  }

  sdk::Host host_;
  std::string prefix_;
  size_t max_series_;
  size_t max_bytes_;
  size_t exposed_bytes_ = 0;
  // Guarded by the service's lock, under which record() is called.
  std::unordered_map<std::string, std::optional<sdk::Metric>> metrics_;
  std::unordered_set<std::string> exposed_;
  bool warned_full_ = false;
};

std::string writer_id() {
  std::random_device random;
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%08x%08x", random(), random());
  return buffer;
}

uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

pb::Kind kind_of(m::Kind kind) {
  return kind == m::Kind::kGauge       ? pb::KIND_GAUGE
         : kind == m::Kind::kHistogram ? pb::KIND_HISTOGRAM
                                       : pb::KIND_COUNTER;
}

class MetricsPlugin final : public sdk::Plugin {
 public:
  explicit MetricsPlugin(sdk::InitContext& init)
      : host_(init.host),
        exposition_(init.host, init.host.config_string("prometheus_prefix"),
                    static_cast<size_t>(init.host.config_int("max_series")),
                    static_cast<size_t>(init.host.config_int("max_exposed_bytes"))),
        service_(settings_from(init.host),
                 init.host.config_bool("expose_prometheus") ? &exposition_ : nullptr,
                 tracking_since(init.previous_state)),
        windows_(init.host.store(), service_.settings().resolutions, writer_id()),
        max_per_request_(init.host.config_int("max_measurements_per_request")),
        max_per_player_(init.host.config_int("max_measurements_per_player_per_minute")),
        max_per_client_(init.host.config_int("max_points_per_client_per_minute")),
        max_query_points_(init.host.config_int("max_query_points")),
        max_query_windows_(static_cast<size_t>(init.host.config_int("max_query_windows"))) {
    take_over(init.previous_state);
    try {
      service_.load_families(windows_.families());
    } catch (const sdk::Error& e) {
      // The store is down at start: new data waits until a flush reaches it.
      service_.set_store_down(e.what());
    }
    const auto flush_every = std::chrono::seconds(init.host.config_int("flush_interval_s"));
    flush_timer_ = init.host.start_timer(
        flush_every, flush_every, [this] { flush(false); }, sdk::Run::kBlocking);
    const auto retention_every = std::chrono::seconds(init.host.config_int("retention_interval_s"));
    retention_timer_ = init.host.start_timer(
        retention_every, retention_every, [this] { apply_retention(); }, sdk::Run::kBlocking);
  }

  // What was acknowledged and is not yet stored is stored now: the windows the next generation
  // did not take over (calls that arrived after save_state), or all of them at a plain unload.
  ~MetricsPlugin() override {
    flush_timer_.cancel();
    retention_timer_.cancel();
    flush(true);
  }

  static void describe(sdk::PluginBuilder<MetricsPlugin>& b) {
    b.service("gameverse.metrics.v1.Metrics")
        .blocking("Record", &MetricsPlugin::record)
        .blocking("Query", &MetricsPlugin::query, sdk::role("metrics"))
        .blocking("ListSeries", &MetricsPlugin::list_series, sdk::role("metrics"));
    // OpenTelemetry senders (game servers, services) export without a player's token; each client
    // address is held to its own rate and series limits.
    b.service("opentelemetry.proto.collector.metrics.v1.MetricsService")
        .blocking("Export", &MetricsPlugin::export_metrics, sdk::role("telemetry"));
    b.collection("w10s").collection("w1m").collection("w1h").collection("families");
    b.config_int("max_series_per_metric", 1000, "Series (distinct label sets) one metric may have",
                 sdk::between(1, 1000000))
        .config_int("max_series_per_sender", 10000,
                    "Series one sender (a signed-in player, or an OTLP client's address) may make",
                    sdk::between(1, 1000000))
        .config_int("max_series", 100000, "Series the service holds in all", sdk::between(1, 10000000))
        .config_int("max_metrics", 1000, "Exported (OTLP) metric names the service holds",
                    sdk::between(1, 100000))
        .config_int("max_player_metrics", 1000, "Metric names players may make by Record, all together",
                    sdk::between(1, 100000))
        .config_int("max_names_per_player", 50, "Metric names one player may make by Record",
                    sdk::between(1, 100000))
        .config_int("max_labels", 8, "Labels one metric may have", sdk::between(0, 8))
        .config_int("max_label_value_bytes", 128, "Longest label value, in bytes", sdk::between(1, 4096))
        .config_string(
            "histogram_buckets", "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120,300,600,1800,3600",
            "Bucket upper bounds of recorded histograms and event durations, increasing", sdk::non_empty())
        .config_int("retention_10s_h", 6, "How long 10-second windows are kept, in hours",
                    sdk::between(1, 24 * 30))
        .config_int("retention_1m_h", 24 * 7, "How long 1-minute windows are kept, in hours",
                    sdk::between(1, 24 * 365))
        .config_int("retention_1h_d", 400, "How long 1-hour windows are kept, in days", sdk::between(1, 3650))
        .config_int("flush_interval_s", 2, "How often closed windows are stored, in seconds",
                    sdk::between(1, 60))
        .config_int("flush_delay_s", 2,
                    "A window is stored this long after it ends, for stragglers, in seconds",
                    sdk::between(0, 60))
        .config_int("retention_interval_s", 300,
                    "How often windows past their retention are deleted, in seconds", sdk::at_least(1))
        .config_int("max_lateness_s", 3600, "Exported points older than this are refused, in seconds",
                    sdk::between(10, 86400))
        .config_int("series_idle_s", 3600,
                    "A series unseen this long frees its place in the series limits, in seconds",
                    sdk::at_least(10))
        .config_int("max_pending_entries", 200000,
                    "Window aggregates held in memory before they are stored; more data is refused",
                    sdk::at_least(100))
        .config_int("max_pending_bytes", 256 << 20,
                    "Estimated bytes of the window aggregates held in memory; more data is refused",
                    sdk::at_least(1 << 20))
        .config_int(
            "max_cumulative_bytes", 128 << 20,
            "Estimated bytes of the OTLP cumulative streams' last values; new streams past it are refused",
            sdk::at_least(1 << 20))
        .config_int("max_measurements_per_request", 1000, "Measurements one Record call may carry",
                    sdk::between(1, 100000))
        .config_int("max_measurements_per_player_per_minute", 6000,
                    "Measurements one signed-in player may record a minute", sdk::at_least(1))
        .config_int("max_points_per_client_per_minute", 600000,
                    "OTLP data points one sender (its principal, else its address) may export a minute",
                    sdk::at_least(1))
        .config_int("max_query_points", 11000, "Steps one query may return per series",
                    sdk::between(1, 1000000))
        .config_int("max_query_windows", 500000, "Stored windows one query may read", sdk::at_least(1))
        .config_bool("expose_prometheus", true, "Expose what arrives on the host's /metrics")
        .config_bool("expose_player_metrics", false,
                     "Also expose what players Record (their label values) on the host's /metrics")
        .config_int("max_exposed_bytes", 16 << 20,
                    "Bytes of series text the plugin may add to /metrics; new series past it are not exposed",
                    sdk::between(1024, 1 << 30))
        .config_string("prometheus_prefix", "game_", "Prefix of the exposed metrics' names");
  }

  sdk::Status record(sdk::CallContext& context, const pb::RecordRequest& request, pb::RecordReply& reply) {
    return answer([&] {
      const sdk::Principal caller = context.principal();
      if (caller.anonymous()) {
        throw sdk::Error(
            sdk::StatusCode::kUnauthenticated,
            "Record needs a signed-in caller: send the metadata authorization: Bearer <access token>");
      }
      const int count = request.measurements_size();
      if (count > max_per_request_) {
        throw m::MetricsError(m::MetricsError::Kind::kInvalidArgument,
                              "measurements has " + std::to_string(count) +
                                  " entries; a call takes at most " + std::to_string(max_per_request_) +
                                  " (max_measurements_per_request)");
      }
      charge("player:" + caller.user_id, count, max_per_player_, "player '" + caller.user_id + "'",
             "max_measurements_per_player_per_minute", "measurements");
      std::vector<m::Measurement> batch;
      batch.reserve(static_cast<size_t>(count));
      for (const pb::Measurement& in : request.measurements()) {
        m::Measurement out;
        out.name = in.name();
        out.labels.insert(in.labels().begin(), in.labels().end());
        switch (in.value_case()) {
          case pb::Measurement::kCounterAdd:
            out.type = m::Measurement::Type::kCounterAdd;
            out.value = in.counter_add();
            break;
          case pb::Measurement::kGaugeSet:
            out.type = m::Measurement::Type::kGaugeSet;
            out.value = in.gauge_set();
            break;
          case pb::Measurement::kHistogramObserve:
            out.type = m::Measurement::Type::kHistogramObserve;
            out.value = in.histogram_observe();
            break;
          case pb::Measurement::kEvent:
            out.type = m::Measurement::Type::kEvent;
            if (in.event().has_duration_s()) out.duration_s = in.event().duration_s();
            break;
          default:
            throw m::MetricsError(
                m::MetricsError::Kind::kInvalidArgument,
                "measurements[" + std::to_string(batch.size()) +
                    "] has no value: set counter_add, gauge_set, histogram_observe or event");
        }
        batch.push_back(std::move(out));
      }
      reply.set_accepted(
          static_cast<uint32_t>(service_.record("player:" + caller.user_id, batch, sdk::now_unix_ms())));
    });
  }

  sdk::Status export_metrics(sdk::CallContext& context, const collector::ExportMetricsServiceRequest& request,
                             collector::ExportMetricsServiceResponse& reply) {
    return answer([&] {
      const sdk::Principal caller = context.principal();
      // An OpenTelemetry sender is counted apart from the players who Record, even under one principal.
      const std::string sender =
          caller.anonymous() ? "client:" + std::string(context.peer_address()) : "otlp:" + caller.user_id;
      // Charged before anything is copied out of the request.
      charge(sender, static_cast<int64_t>(m::point_count(request)), max_per_client_,
             "client '" + sender + "'", "max_points_per_client_per_minute", "data points");
      const std::vector<m::OtlpPoint> points = m::points_of(request, sender);
      const m::ExportOutcome outcome = service_.export_points(sender, points, sdk::now_unix_ms());
      if (outcome.rejected > 0) {
        reply.mutable_partial_success()->set_rejected_data_points(outcome.rejected);
        reply.mutable_partial_success()->set_error_message(outcome.error_message);
      }
    });
  }

  sdk::Status query(sdk::CallContext&, const pb::QueryRequest& request, pb::QueryReply& reply) {
    return answer([&] {
      m::QuerySpec spec;
      spec.metric = request.metric();
      spec.start_s = request.start_unix_s();
      spec.end_s = request.end_unix_s();
      spec.step_s = request.step_s();
      if (request.aggregation() == pb::AGGREGATION_UNSPECIFIED ||
          !pb::Aggregation_IsValid(request.aggregation())) {
        throw m::MetricsError(m::MetricsError::Kind::kInvalidArgument,
                              "aggregation is unset: choose SUM, RATE, AVG, MIN, MAX, COUNT or PERCENTILE");
      }
      spec.aggregation = static_cast<m::Aggregation>(request.aggregation());
      spec.percentile = request.percentile();
      spec.match.insert(request.match().begin(), request.match().end());
      spec.by.assign(request.by().begin(), request.by().end());
      std::optional<m::Family> family = service_.family(spec.metric);
      if (!family) {
        // Another host or an earlier run may have made it.
        service_.load_families(windows_.families());
        family = service_.family(spec.metric);
      }
      const size_t resolution = m::check_query(spec, family ? &*family : nullptr,
                                               service_.settings().resolutions, max_query_points_);
      if (!family) {
        throw m::MetricsError(m::MetricsError::Kind::kInvalidArgument,
                              "metric '" + spec.metric + "' is not known");
      }
      const int64_t first = spec.start_s - spec.start_s % spec.step_s;
      std::vector<m::WindowEntry> entries;
      {
        // Not while a flush moves windows from memory to the store: each is read in one place.
        std::shared_lock lock(flush_mu_);
        entries = windows_.read(resolution, spec.metric, first, spec.end_s, max_query_windows_);
        for (m::WindowEntry& e : service_.pending(resolution, spec.metric)) entries.push_back(std::move(e));
      }
      reply.set_resolution(service_.settings().resolutions[resolution].name);
      for (const m::QuerySeries& s : m::evaluate(spec, family->kind, family->bounds, entries)) {
        pb::Series* out = reply.add_series();
        out->mutable_labels()->insert(s.labels.begin(), s.labels.end());
        for (const m::QueryPoint& p : s.points) {
          pb::Point* point = out->add_points();
          point->set_unix_s(p.unix_s);
          point->set_value(p.value);
        }
      }
    });
  }

  sdk::Status list_series(sdk::CallContext&, const pb::ListSeriesRequest& request,
                          pb::ListSeriesReply& reply) {
    return answer([&] {
      for (const auto& [family, series] : service_.families(request.prefix())) {
        pb::MetricInfo* info = reply.add_metrics();
        info->set_name(family.name);
        info->set_kind(kind_of(family.kind));
        for (const auto& l : family.label_names) info->add_label_names(l);
        for (double b : family.bounds) info->add_bounds(b);
        info->set_series(static_cast<uint32_t>(series));
      }
    });
  }

  // The next generation takes the windows not yet stored and the cumulative streams' last values.
  std::string save_state() override {
    std::unique_lock flush_lock(flush_mu_);
    m::rec::HandOver state;
    state.set_tracking_since_ns(service_.tracking_since_ns());
    for (const m::WindowEntry& e : service_.take_all()) {
      m::rec::WindowEntryState* w = state.add_windows();
      w->set_resolution(static_cast<int32_t>(e.resolution));
      *w->mutable_record() = m::record_of(e);
    }
    for (const auto& s : service_.cumulative_streams()) {
      m::rec::CumulativeStream* c = state.add_streams();
      c->set_key(s.key);
      c->set_start_ns(s.start_ns);
      c->set_value(s.value);
      for (double b : s.histogram.bounds) c->add_bounds(b);
      for (uint64_t n : s.histogram.buckets) c->add_buckets(n);
      c->set_sum(s.histogram.sum);
      c->set_count(s.histogram.count);
      c->set_seen_s(s.seen_s);
    }
    std::vector<m::Family> unsaved = service_.take_new_families();
    {
      std::lock_guard lock(unsaved_mu_);
      unsaved.insert(unsaved.end(), unsaved_families_.begin(), unsaved_families_.end());
      unsaved_families_.clear();
    }
    // Stored now, so the next generation reads them at start; what the store cannot take now is
    // handed over with the windows.
    const m::StoreWindows::WriteResult written = windows_.write({}, unsaved);
    report_set_aside(written);
    for (const m::Family& f : written.failed_families) *state.add_families() = m::family_record(f);
    return state.SerializeAsString();
  }

 private:
  static uint64_t tracking_since(std::string_view previous_state) {
    m::rec::HandOver state;
    if (!previous_state.empty() &&
        state.ParseFromArray(previous_state.data(), static_cast<int>(previous_state.size())) &&
        state.tracking_since_ns() != 0) {
      return state.tracking_since_ns();
    }
    return now_ns();
  }

  void take_over(std::string_view previous_state) {
    if (previous_state.empty()) return;
    m::rec::HandOver state;
    if (!state.ParseFromArray(previous_state.data(), static_cast<int>(previous_state.size()))) {
      host_.error("metrics: the previous generation's state does not parse; its unsaved windows are lost");
      return;
    }
    std::vector<m::WindowEntry> entries;
    for (const auto& w : state.windows())
      entries.push_back(m::entry_of(static_cast<size_t>(w.resolution()), w.record()));
    service_.put_back(entries);
    std::vector<m::CumulativeTracker::Stream> streams;
    for (const auto& c : state.streams()) {
      m::CumulativeTracker::Stream s;
      s.key = c.key();
      s.start_ns = c.start_ns();
      s.value = c.value();
      s.histogram.bounds.assign(c.bounds().begin(), c.bounds().end());
      s.histogram.buckets.assign(c.buckets().begin(), c.buckets().end());
      s.histogram.sum = c.sum();
      s.histogram.count = c.count();
      s.seen_s = c.seen_s();
      streams.push_back(std::move(s));
    }
    service_.restore_cumulative(streams);
    std::lock_guard lock(unsaved_mu_);
    for (const auto& f : state.families()) unsaved_families_.push_back(m::family_of(f));
  }

  // Records the store refuses for what they hold are dropped, not retried: said loudly and counted.
  void report_set_aside(const m::StoreWindows::WriteResult& written) {
    if (written.set_aside == 0) return;
    set_aside_ += written.set_aside;
    host_.error("metrics: the store refused " + std::to_string(written.set_aside) +
                " records for what they hold; they are dropped (" + std::to_string(set_aside_.load()) +
                " since start): " + written.set_aside_reason);
  }

  // Counts `n` against a per-minute allowance in the host's cache (shared by every host with Redis).
  void charge(const std::string& who, int64_t n, int64_t limit, const std::string& named, const char* key,
              const char* what) {
    if (n == 0) return;
    const int64_t minute = sdk::now_unix_ms() / 60000;
    int64_t used = 0;
    try {
      used =
          host_.cache().increment("rate:" + who + ":" + std::to_string(minute), n, std::chrono::minutes(2));
    } catch (const sdk::Error& e) {
      throw m::MetricsError(m::MetricsError::Kind::kUnavailable,
                            std::string("the cache is unavailable: ") + e.what());
    }
    if (used > limit) {
      throw m::MetricsError(m::MetricsError::Kind::kResourceExhausted,
                            named + " sent " + std::to_string(used) + " " + what +
                                " this minute, more than " + key + " = " + std::to_string(limit) +
                                "; retry next minute");
    }
  }

  void flush(bool everything) {
    std::unique_lock flush_lock(flush_mu_);
    const int64_t now_s = sdk::now_unix_ms() / 1000;
    std::vector<m::WindowEntry> entries = everything ? service_.take_all() : service_.take_closed(now_s);
    std::vector<m::Family> families = service_.take_new_families();
    {
      std::lock_guard lock(unsaved_mu_);
      families.insert(families.end(), unsaved_families_.begin(), unsaved_families_.end());
      unsaved_families_.clear();
    }
    std::string error;
    if (entries.empty() && families.empty()) {
      if (!service_.store_down()) {
        service_.forget_idle(now_s);
        return;
      }
      try {  // nothing to write: a listing tells whether the store is back
        sdk::Store::Query probe;
        probe.collection = "families";
        probe.limit = 1;
        host_.store().list(probe);
      } catch (const sdk::Error& e) {
        error = e.what();
      }
    } else {
      const size_t count = entries.size();
      m::StoreWindows::WriteResult written = windows_.write(std::move(entries), families);
      report_set_aside(written);
      error = written.error;
      if (!written.failed.empty() || !written.failed_families.empty()) {
        if (everything) {
          host_.error("metrics: " + std::to_string(written.failed.size()) + " of " + std::to_string(count) +
                      " window aggregates could not be stored at shutdown: " + error);
        } else {
          service_.put_back(written.failed);
          std::lock_guard lock(unsaved_mu_);
          unsaved_families_.insert(unsaved_families_.end(), written.failed_families.begin(),
                                   written.failed_families.end());
        }
      }
    }
    if (!error.empty()) {
      if (!service_.store_down())
        host_.warn("metrics: the store is unavailable; new data is refused: " + error);
      service_.set_store_down(error);
    } else if (service_.store_down()) {
      host_.info("metrics: the store is back; data is taken again");
      service_.set_store_down(std::nullopt);
    }
    service_.forget_idle(now_s);
  }

  void apply_retention() {
    const int64_t now_s = sdk::now_unix_ms() / 1000;
    size_t erased = 0;
    for (const auto& [family, series] : service_.families("")) {
      for (size_t r = 0; r < service_.settings().resolutions.size(); ++r) {
        const m::Resolution& resolution = service_.settings().resolutions[r];
        erased += windows_.erase_before(r, family.name, now_s - resolution.retention_s);
      }
    }
    if (erased > 0)
      host_.debug("metrics: deleted " + std::to_string(erased) + " windows past their retention");
  }

  sdk::Host host_;
  HostExposition exposition_;
  m::MetricsService service_;
  m::StoreWindows windows_;
  int64_t max_per_request_;
  int64_t max_per_player_;
  int64_t max_per_client_;
  int64_t max_query_points_;
  size_t max_query_windows_;
  std::shared_mutex flush_mu_;  // a flush or hand-over (unique) against queries (shared)
  std::mutex unsaved_mu_;
  std::vector<m::Family> unsaved_families_;  // made but not yet stored (the store was down)
  std::atomic<uint64_t> set_aside_{0};
  sdk::Timer flush_timer_;
  sdk::Timer retention_timer_;
};

}  // namespace

GAMEVERSE_PLUGIN(MetricsPlugin, "metrics", "0.1.0", "Game metrics and OTLP ingest, aggregated in windows")
