// gameverse.logging.v1.Logging and OTLP's LogsService/Export: maps the messages onto the logging
// domain, limits senders, and feeds live tails on this host and, through pub/sub, on others.
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include "api/otlp_logs.hpp"
#include "domain/log_service.hpp"
#include "gameverse/logging/records/v1/records.pb.h"
#include "gameverse/logging/v1/logging.pb.h"
#include "infrastructure/elasticsearch_sink.hpp"
#include "infrastructure/store_log_repository.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::logging::v1;
namespace otlp = opentelemetry::proto::collector::logs::v1;
using namespace gameverse::logging;

// Where a stored chunk is announced, for the tails on every host.
constexpr const char* kChunksTopic = "gameverse.logging.chunks";

int64_t now_unix_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_writer_id() {
  std::random_device random;
  std::uniform_int_distribution<uint64_t> bits;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  uint64_t value = bits(random);
  for (int i = 0; i < 12; ++i, value >>= 4) id += kHex[value & 15];
  return id;
}

LogSettings settings_from(const sdk::Host& host) {
  LogSettings s;
  s.chunk_records = static_cast<size_t>(host.config_int("chunk_records"));
  s.max_body_bytes = static_cast<size_t>(host.config_int("max_body_bytes"));
  const std::array<const char*, kFamilies> keys{
      "retention_hours_info", "retention_hours_trace", "retention_hours_debug", "retention_hours_info",
      "retention_hours_warn", "retention_hours_error", "retention_hours_fatal"};
  for (int family = 0; family < kFamilies; ++family) {
    s.max_age_ns[static_cast<size_t>(family)] =
        host.config_int(keys[static_cast<size_t>(family)]) * kNanosPerHour;
  }
  s.max_stored_bytes = host.config_int("max_stored_mb") * 1024 * 1024;
  return s;
}

// The Elasticsearch sink, when elasticsearch_url is set; bad settings refuse the plugin, naming the key.
std::unique_ptr<elasticsearch::ElasticsearchSink> sink_from(const sdk::Host& host) {
  elasticsearch::SinkOptions o;
  o.url = host.config_string("elasticsearch_url");
  if (o.url.empty()) return nullptr;
  o.index_pattern = host.config_string("elasticsearch_index");
  o.authorization = host.config_string("elasticsearch_authorization");
  o.ca_file = host.config_string("elasticsearch_ca_file");
  o.batch_records = static_cast<size_t>(host.config_int("elasticsearch_batch_records"));
  o.buffer_records = static_cast<size_t>(host.config_int("elasticsearch_buffer_records"));
  o.buffer_bytes = static_cast<size_t>(host.config_int("elasticsearch_buffer_mb")) * 1024 * 1024;
  o.timeout = std::chrono::milliseconds(host.config_int("elasticsearch_timeout_ms"));
  o.backoff.initial = std::chrono::milliseconds(host.config_int("elasticsearch_retry_initial_ms"));
  o.backoff.max = std::chrono::milliseconds(host.config_int("elasticsearch_retry_max_ms"));
  try {
    return std::make_unique<elasticsearch::ElasticsearchSink>(std::move(o));
  } catch (const std::invalid_argument& e) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument, e.what());
  }
}

LogFilter filter_of(const pb::LogFilter& f) {
  LogFilter out;
  out.from_unix_nano = f.from_unix_nano();
  out.to_unix_nano = f.to_unix_nano();
  out.min_severity = f.min_severity();
  out.services.assign(f.services().begin(), f.services().end());
  out.plugins.assign(f.plugins().begin(), f.plugins().end());
  out.request_id = f.request_id();
  for (const pb::Attribute& a : f.attributes()) out.attributes.push_back({a.key(), a.value()});
  out.text = f.text();
  return out;
}

void fill(pb::LogEntry& out, const Entry& entry) {
  const LogRecord& r = entry.record;
  out.set_time_unix_nano(r.time_unix_nano);
  out.set_observed_unix_nano(r.observed_unix_nano);
  out.set_severity_number(r.severity_number);
  out.set_severity_text(r.severity_text);
  out.set_service(r.service);
  out.set_host(r.host);
  out.set_plugin(r.plugin);
  out.set_generation(r.generation);
  out.set_request_id(r.request_id);
  out.set_trace_id(r.trace_id);
  out.set_span_id(r.span_id);
  out.set_body(r.body);
  for (const Attribute& a : r.attributes) {
    pb::Attribute* attribute = out.add_attributes();
    attribute->set_key(a.key);
    attribute->set_value(a.value);
  }
  out.set_cursor(encode_cursor(entry.position));
}

std::optional<Position> cursor_of(const std::string& cursor) {
  if (cursor.empty()) return std::nullopt;
  std::string error;
  std::optional<Position> position = decode_cursor(cursor, &error);
  if (!position) throw sdk::Error(sdk::StatusCode::kInvalidArgument, error);
  return position;
}

// Storage failures are worth a retry to a sender (OTLP's retryable UNAVAILABLE); what the store
// refuses for the request itself is not.
sdk::Error storage_error(const sdk::Error& e) {
  if (e.code() == sdk::StatusCode::kInvalidArgument || e.code() == sdk::StatusCode::kResourceExhausted)
    return e;
  return sdk::Error(sdk::StatusCode::kUnavailable,
                    "log storage is unavailable, retry later: " + std::string(e.what()));
}

// Whom a sender's rate counts against: its principal, or without one its address.
std::string client_of(const sdk::CallContext& context) {
  const sdk::Principal principal = context.principal();
  if (!principal.user_id.empty()) return "user:" + principal.user_id;
  return std::string(context.peer_address());
}

// A live tail: replays from its cursor, then takes every chunk announced after it opened. Moves
// to the next generation at a hot reload (detach / resume).
struct Tail {
  explicit Tail(sdk::ServerStream<pb::LogEntry> s) : stream(std::move(s)) {}
  pb::TailRequest request;
  LogFilter filter;
  sdk::ServerStream<pb::LogEntry> stream;
  std::optional<Position> after;  // the replay's place
  std::mutex mu;
  bool replaying = true;                    // from a cursor, or catching up: announcements wait
  bool live = false;                        // the replay from the cursor is over (or there was none)
  std::vector<std::string> catch_up;        // resumed live: recent chunks it may not have had yet
  bool ended = false;                       // finished, or detached: nothing more is written
  std::vector<std::string> waiting;         // announced while replaying
  std::set<std::string> replayed;           // chunks the replay read that live announcements may name
  std::deque<std::string> delivered_order;  // live chunks sent, newest last (at most kDelivered)
  std::set<std::string> delivered;
  int64_t opened_unix_nano = 0;
  // Opened with no cursor, "from now": what the service stored before then is not the tail's,
  // even when its announcement comes later. 0: a tail from a cursor.
  int64_t received_from_unix_nano = 0;

  static constexpr size_t kDelivered = 4096;  // as many as a generation remembers announced
  uint64_t announced_from = 0;  // the first announcement after it opened (this generation's count)
  // Under mu: false when the chunk was sent already.
  bool first_delivery(const std::string& key) {
    if (!delivered.insert(key).second) return false;
    delivered_order.push_back(key);
    if (delivered_order.size() > kDelivered) {
      delivered.erase(delivered_order.front());
      delivered_order.pop_front();
    }
    return true;
  }
};

class LoggingPlugin;

class TailSession final : public sdk::StreamSession {
 public:
  TailSession(LoggingPlugin& plugin, std::shared_ptr<Tail> tail) : plugin_(plugin), tail_(std::move(tail)) {}
  std::string detach() override;
  void on_cancel() override;

 private:
  LoggingPlugin& plugin_;
  std::shared_ptr<Tail> tail_;
};

class LoggingPlugin final : public sdk::Plugin {
 public:
  explicit LoggingPlugin(sdk::InitContext& init)
      : host_(init.host),
        repository_(init.host.store()),
        service_(repository_, settings_from(init.host), new_writer_id(), now_unix_nano),
        max_records_per_client_per_s_(init.host.config_int("max_records_per_client_per_s")),
        client_lines_per_player_per_minute_(init.host.config_int("client_lines_per_player_per_minute")),
        max_tails_(static_cast<size_t>(init.host.config_int("max_tails"))),
        stored_(init.host.counter("gameverse_logging_records_stored_total", "Log records stored, by source",
                                  {"source"})),
        refused_(init.host.counter(
            "gameverse_logging_records_refused_total",
            "Log records refused (too old, ahead of the clock, over a rate), by source", {"source"})),
        retention_dropped_(init.host.counter("gameverse_logging_retention_dropped_records_total",
                                             "Log records dropped by retention")),
        tails_open_(init.host.gauge("gameverse_logging_tails", "Live tails open on this host")),
        sink_(sink_from(init.host)) {
    // Inline: an announcement is in this generation's hands at once (a reload hands the recent
    // ones on); tails are fed on the pool.
    announcements_ = init.host.subscribe(
        kChunksTopic, [this](std::string_view, std::string_view payload) { announced(payload); },
        sdk::Run::kInline);
    if (sink_) {
      es_shipped_ = init.host.counter("gameverse_logging_elasticsearch_shipped_total",
                                      "Log records Elasticsearch stored");
      es_dropped_ = init.host.counter("gameverse_logging_elasticsearch_dropped_total",
                                      "Log records not sent to Elasticsearch: its buffer was full");
      es_rejected_ = init.host.counter("gameverse_logging_elasticsearch_rejected_total",
                                       "Log records Elasticsearch refused for good (e.g. a mapping error)");
      es_failed_ = init.host.counter("gameverse_logging_elasticsearch_failed_requests_total",
                                     "_bulk requests that failed as a whole (kept and retried)");
      es_buffered_ = init.host.gauge("gameverse_logging_elasticsearch_buffered",
                                     "Log records waiting to be sent to Elasticsearch");
      const auto flush_every =
          std::chrono::milliseconds(init.host.config_int("elasticsearch_flush_interval_ms"));
      sink_timer_ = init.host.start_timer(
          flush_every, flush_every, [this] { flush_sink(); }, sdk::Run::kBlocking);
    }
    const auto every = std::chrono::seconds(init.host.config_int("retention_interval_s"));
    retention_timer_ = init.host.start_timer(
        every, every, [this] { enforce_retention(); }, sdk::Run::kBlocking);
  }

  ~LoggingPlugin() override {
    sink_timer_.cancel();
    // What waits for Elasticsearch goes now, once, within its timeout: a reload or a stop would
    // lose it (it stays in the store). A sink that is backing off sends nothing.
    if (sink_) sink_->flush();
    retention_timer_.cancel();
    announcements_.cancel();
    std::lock_guard lock(tails_mu_);
    for (const auto& tail : tails_) {
      std::lock_guard tail_lock(tail->mu);
      if (!tail->ended)
        tail->stream.finish(sdk::Status(sdk::StatusCode::kUnavailable,
                                        "the logging service stopped; tail again from the last cursor"));
      tail->ended = true;
    }
  }

  static void describe(sdk::PluginBuilder<LoggingPlugin>& b) {
    b.service("opentelemetry.proto.collector.logs.v1.LogsService")
        .blocking("Export", &LoggingPlugin::export_logs, sdk::role("telemetry"));
    b.service("gameverse.logging.v1.Logging")
        .blocking("Query", &LoggingPlugin::query, sdk::role("logs"))
        .server_stream_movable("Tail", &LoggingPlugin::tail_open, &LoggingPlugin::tail_resume,
                               sdk::role("logs"))
        .blocking("Write", &LoggingPlugin::write, sdk::kAuthenticated);
    b.collection("chunks").collection("minutes").collection("sizes").collection("requests");
    b.config_int("retention_hours_trace", 24, "How long TRACE records are kept, in hours",
                 sdk::between(1, 24 * 3650))
        .config_int("retention_hours_debug", 24, "How long DEBUG records are kept, in hours",
                    sdk::between(1, 24 * 3650))
        .config_int("retention_hours_info", 24 * 7,
                    "How long INFO records (and those of no severity) are kept, in hours",
                    sdk::between(1, 24 * 3650))
        .config_int("retention_hours_warn", 24 * 14, "How long WARN records are kept, in hours",
                    sdk::between(1, 24 * 3650))
        .config_int("retention_hours_error", 24 * 30, "How long ERROR records are kept, in hours",
                    sdk::between(1, 24 * 3650))
        .config_int("retention_hours_fatal", 24 * 30, "How long FATAL records are kept, in hours",
                    sdk::between(1, 24 * 3650))
        .config_int(
            "max_stored_mb", 0,
            "Stored records at most, in MiB (0: no bound); above it the least severe, oldest hours go first",
            sdk::at_least(0))
        .config_int("retention_interval_s", 60, "How often retention runs, in seconds",
                    sdk::between(1, 86400))
        .config_int("chunk_records", 1000, "Records per stored chunk at most", sdk::between(1, 10000))
        .config_int("max_body_bytes", 16384, "Longer bodies are cut (the record says so)",
                    sdk::between(64, 1048576))
        .config_int(
            "max_records_per_client_per_s", 200000,
            "OTLP records one sender (principal or address) may send a second; more are RESOURCE_EXHAUSTED",
            sdk::at_least(1))
        .config_int("client_lines_per_player_per_minute", 120, "Lines one player may Write a minute",
                    sdk::at_least(1))
        .config_int("max_tails", 64, "Live tails open on this host at once; more are RESOURCE_EXHAUSTED",
                    sdk::between(1, 10000))
        .config_string(
            "elasticsearch_url", "",
            "Also send every stored record to Elasticsearch's _bulk API here (http:// or https://, "
            "with an optional path prefix); empty: no Elasticsearch")
        .config_string(
            "elasticsearch_index", "gameverse-logs-%Y.%m.%d",
            "The index of a record: %Y %m %d of its UTC time (config/elasticsearch has a template)")
        .config_string("elasticsearch_authorization", "",
                       "The Authorization header sent, e.g. \"ApiKey <base64>\" or \"Basic <base64>\"")
        .config_string("elasticsearch_ca_file", "",
                       "https: the CAs Elasticsearch's certificate must chain to (default: the system's)")
        .config_int("elasticsearch_batch_records", 1000, "Records per _bulk request at most",
                    sdk::between(1, 100000))
        .config_int("elasticsearch_buffer_records", 50000,
                    "Records waiting for Elasticsearch at most; newer ones are dropped, counted",
                    sdk::between(1, 10000000))
        .config_int("elasticsearch_buffer_mb", 64,
                    "Bytes of records waiting for Elasticsearch at most, in MiB", sdk::between(1, 4096))
        .config_int("elasticsearch_timeout_ms", 10000, "A _bulk request's time limit",
                    sdk::between(100, 600000))
        .config_int("elasticsearch_retry_initial_ms", 500, "The first wait after a failed request",
                    sdk::between(1, 600000))
        .config_int("elasticsearch_retry_max_ms", 30000, "The longest wait between retries",
                    sdk::between(1, 3600000))
        .config_int("elasticsearch_flush_interval_ms", 1000, "How often what waits is sent",
                    sdk::between(10, 600000));
  }

  sdk::Status export_logs(sdk::CallContext& context, const otlp::ExportLogsServiceRequest& request,
                          otlp::ExportLogsServiceResponse& reply) {
    // The sender's rate is charged before anything is converted. The host's own shipping (its
    // in-process peer) is not limited: it drops what it cannot queue.
    if (context.peer() != "inproc:gameverse") over_rate(client_of(context), record_count(request));
    const int64_t now = now_unix_nano();
    OtlpRecords in = records_of(request, now);
    AppendResult result = store(std::move(in.records), "otlp");
    const size_t refused = result.rejected + in.refused;
    if (refused > 0) {
      reply.mutable_partial_success()->set_rejected_log_records(static_cast<int64_t>(refused));
      reply.mutable_partial_success()->set_error_message(
          !result.rejected_reason.empty() ? result.rejected_reason
                                          : std::to_string(in.refused) + " record(s): " + in.refused_reason);
    }
    return sdk::Status::ok();
  }

  sdk::Status write(sdk::CallContext& context, const pb::WriteRequest& request, pb::WriteResponse& reply) {
    const std::string player = context.principal().user_id;
    if (player.empty()) return {sdk::StatusCode::kUnauthenticated, "Write needs a signed-in player"};
    if (request.entries_size() > 100)
      return {sdk::StatusCode::kInvalidArgument, "entries: at most 100 a call"};
    const int64_t used =
        host_.cache().increment("write/" + player, request.entries_size(), std::chrono::minutes(1));
    if (used > client_lines_per_player_per_minute_) {
      refused_.record(static_cast<double>(request.entries_size()), {"client"});
      return {sdk::StatusCode::kResourceExhausted, "over client_lines_per_player_per_minute (" +
                                                       std::to_string(client_lines_per_player_per_minute_) +
                                                       "); retry in a minute"};
    }
    const int64_t now = now_unix_nano();
    std::vector<LogRecord> records;
    for (const pb::ClientLogEntry& e : request.entries()) {
      LogRecord r;
      // A client's clock is its own: what is far off is taken as now.
      const int64_t t = e.time_unix_nano();
      r.time_unix_nano = t > now - 5 * kNanosPerMinute && t < now + 5 * kNanosPerMinute ? t : now;
      r.observed_unix_nano = now;
      r.severity_number = std::clamp(e.severity_number(), 0, 24);
      r.severity_text = severity_name(r.severity_number);
      r.service = "game-client";
      // Not the call's request id: a client may name that itself (x-request-id), and then file its
      // lines under another call's.
      r.body = e.body();
      r.attributes.push_back({"player", player});
      for (const pb::Attribute& a : e.attributes()) {
        if (r.attributes.size() > 16) break;
        if (a.key().starts_with("gameverse.") || a.key() == "player") continue;  // not the client's to say
        r.attributes.push_back({a.key(), a.value()});
      }
      records.push_back(std::move(r));
    }
    const AppendResult result = store(std::move(records), "client");
    reply.set_accepted(static_cast<uint32_t>(result.accepted));
    reply.set_rejected(static_cast<uint32_t>(result.rejected));
    reply.set_error_message(result.rejected_reason);
    return sdk::Status::ok();
  }

  sdk::Status query(sdk::CallContext&, const pb::QueryRequest& request, pb::QueryResponse& reply) {
    const LogFilter filter = filter_of(request.filter());
    if (std::string problem = check_filter(filter); !problem.empty()) {
      return {sdk::StatusCode::kInvalidArgument, problem};
    }
    if (request.page_size() > 1000) return {sdk::StatusCode::kInvalidArgument, "page_size: at most 1000"};
    const size_t page_size = request.page_size() == 0 ? 100 : request.page_size();
    const bool newest_first = request.order() != pb::ORDER_OLDEST_FIRST;
    Page page;
    try {
      page = service_.query(filter, newest_first, page_size, cursor_of(request.cursor()));
    } catch (const sdk::Error& e) {
      throw storage_error(e);
    }
    for (const Entry& entry : page.entries) fill(*reply.add_entries(), entry);
    if (page.next) reply.set_next_cursor(encode_cursor(*page.next));
    return sdk::Status::ok();
  }

  std::unique_ptr<sdk::StreamSession> tail_open(sdk::CallContext&, const pb::TailRequest& request,
                                                sdk::ServerStream<pb::LogEntry> stream) {
    auto tail = make_tail(request, stream);
    tail->after = cursor_of(request.cursor());
    // The cursor's chunk was sent before (it holds the cursor's record): a late announcement of it
    // must not send it again.
    if (tail->after) tail->replayed.insert(tail->after->chunk_key);
    register_tail(tail);
    if (request.cursor().empty()) {
      std::lock_guard lock(tail->mu);
      tail->replaying = false;
      tail->live = true;
      tail->received_from_unix_nano = tail->opened_unix_nano;
    } else {
      start_replay(tail);
    }
    return std::make_unique<TailSession>(*this, tail);
  }

  // The previous generation's tail, from what detach() returned: the replay goes on from its
  // place; a live tail first gets what was announced to either generation lately, less what it
  // sent (an announcement the previous generation took but had not fed to its tails is there).
  std::unique_ptr<sdk::StreamSession> tail_resume(std::string_view detached,
                                                  sdk::ServerStream<pb::LogEntry> stream) {
    ::gameverse::logging::records::v1::DetachedTail state;
    pb::TailRequest request;
    if (!state.ParseFromArray(detached.data(), static_cast<int>(detached.size())) ||
        !request.ParseFromString(state.request())) {
      throw sdk::Error(sdk::StatusCode::kInternal, "a tail handed over at a reload could not be read");
    }
    auto tail = make_tail(request, stream);
    tail->after = cursor_of(state.after_cursor());
    for (const std::string& key : state.delivered()) tail->first_delivery(key);
    tail->received_from_unix_nano = state.received_from_unix_nano();
    if (!state.live()) {
      register_tail(tail);
      start_replay(tail);
      return std::make_unique<TailSession>(*this, tail);
    }
    // Until the recent chunks are out, new ones wait behind them (the tail is "replaying").
    // Registered before this generation's recent chunks are read: an announcement that comes in
    // between waits in the tail instead of passing it by.
    std::vector<std::string> recent(state.announced().begin(), state.announced().end());
    {
      std::lock_guard lock(tail->mu);
      tail->live = true;
      tail->catch_up = recent;  // handed on again if the tail moves before it is through them
    }
    register_tail(tail);
    {
      std::lock_guard lock(recent_mu_);
      for (const auto& [seq, key] : recent_) recent.push_back(key);
    }
    {
      std::lock_guard lock(tail->mu);
      tail->catch_up = recent;
    }
    try {
      host_.run_blocking([this, tail, recent] {
        try {
          for (const std::string& key : recent) {
            std::optional<StoredChunk> chunk = repository_.chunk(key);
            if (chunk && !send_chunk(tail, *chunk)) return;
          }
        } catch (const sdk::Error& e) {
          return close(tail, storage_error(e).status());
        }
        go_live(tail);
      });
    } catch (const sdk::Error& e) {
      close(tail, e.status());
    }
    return std::make_unique<TailSession>(*this, tail);
  }

  // Stops the tail here (nothing more is written once this returns) and says where it was.
  std::string detach(const std::shared_ptr<Tail>& tail) {
    ::gameverse::logging::records::v1::DetachedTail state;
    {
      std::lock_guard lock(tail->mu);
      tail->ended = true;
      state.set_request(tail->request.SerializeAsString());
      if (tail->after) state.set_after_cursor(encode_cursor(*tail->after));
      state.set_live(tail->live);
      state.set_received_from_unix_nano(tail->received_from_unix_nano);
      for (const std::string& key : tail->delivered_order) state.add_delivered(key);
      for (const std::string& key : tail->catch_up) state.add_announced(key);
      for (const std::string& key : tail->waiting) state.add_announced(key);
    }
    {
      std::lock_guard lock(recent_mu_);
      // Only what came after the tail opened: before, it was not the tail's to get.
      for (const auto& [seq, key] : recent_) {
        if (seq >= tail->announced_from) state.add_announced(key);
      }
    }
    forget(tail);
    return state.SerializeAsString();
  }

  void close(const std::shared_ptr<Tail>& tail, const sdk::Status& status) {
    {
      std::lock_guard lock(tail->mu);
      if (!tail->ended) tail->stream.finish(status);
      tail->ended = true;
    }
    forget(tail);
  }

 private:
  std::shared_ptr<Tail> make_tail(const pb::TailRequest& request,
                                  const sdk::ServerStream<pb::LogEntry>& stream) {
    auto tail = std::make_shared<Tail>(stream);
    tail->request = request;
    tail->filter = filter_of(request.filter());
    tail->opened_unix_nano = now_unix_nano();
    std::string problem = check_filter(tail->filter);
    if (problem.empty() && tail->filter.to_unix_nano != 0)
      problem = "filter.to_unix_nano: a tail has no end; leave it 0";
    if (!problem.empty()) throw sdk::Error(sdk::StatusCode::kInvalidArgument, problem);
    return tail;
  }

  void register_tail(const std::shared_ptr<Tail>& tail) {
    {
      std::lock_guard lock(recent_mu_);
      tail->announced_from = announced_seq_;
    }
    std::lock_guard lock(tails_mu_);
    if (tails_.size() >= max_tails_) {
      throw sdk::Error(sdk::StatusCode::kResourceExhausted,
                       "max_tails (" + std::to_string(max_tails_) + ") tails are open on this host");
    }
    tails_.push_back(tail);
    tails_open_.record(static_cast<double>(tails_.size()));
  }

  void start_replay(const std::shared_ptr<Tail>& tail) {
    try {
      host_.run_blocking([this, tail] { replay(tail); });
    } catch (const sdk::Error& e) {
      close(tail, e.status());
    }
  }

  AppendResult store(std::vector<LogRecord> records, const char* source) {
    AppendResult result;
    std::vector<LogRecord> stored;
    try {
      result = service_.append(std::move(records), sink_ ? &stored : nullptr);
    } catch (const sdk::Error& e) {
      throw storage_error(e);
    }
    if (sink_) sink_->offer(stored);
    if (result.accepted > 0) stored_.record(static_cast<double>(result.accepted), {source});
    if (result.rejected > 0) refused_.record(static_cast<double>(result.rejected), {source});
    if (!result.chunk_keys.empty()) {
      // Noted here before it is announced: a tail that moves to the next generation before this
      // generation hears its own announcement still takes the chunks along (detach()).
      remember_recent(result.chunk_keys);
      announce(result.chunk_keys);
    }
    return result;
  }

  void remember_recent(const std::vector<std::string>& keys) {
    std::lock_guard lock(recent_mu_);
    for (const std::string& key : keys) recent_.emplace_back(announced_seq_++, key);
    while (recent_.size() > kRecentChunks) recent_.pop_front();
  }

  void announce(const std::vector<std::string>& keys) {
    std::string payload;
    for (const std::string& key : keys) payload += key + "\n";
    try {
      host_.publish(kChunksTopic, payload);
    } catch (const sdk::Error& e) {
      // Stored and acknowledged all the same: live tails miss it, queries find it.
      host_.warn("logging: could not announce stored records to live tails: " + std::string(e.what()));
    }
  }

  void over_rate(const std::string& client, size_t records) {
    if (records == 0) return;
    const int64_t second = now_unix_nano() / kNanosPerSecond;
    const int64_t used = host_.cache().increment("rate/" + client + "/" + std::to_string(second),
                                                 static_cast<int64_t>(records), std::chrono::seconds(2));
    if (used > max_records_per_client_per_s_) {
      refused_.record(static_cast<double>(records), {"otlp"});
      throw sdk::Error(sdk::StatusCode::kResourceExhausted,
                       "over max_records_per_client_per_s (" + std::to_string(max_records_per_client_per_s_) +
                           ") for " + client + "; retry after 1s");
    }
  }

  void replay(const std::shared_ptr<Tail>& tail) {
    try {
      for (;;) {
        if (tail->stream.cancelled())
          return close(tail, sdk::Status(sdk::StatusCode::kCancelled, "cancelled"));
        std::optional<Position> after;
        {
          std::lock_guard lock(tail->mu);
          if (tail->ended) return;  // detached or finished: the replay stops here
          after = tail->after;
        }
        Page page = service_.query(tail->filter, false, 500, after);
        for (const Entry& entry : page.entries) {
          if (!send(tail, entry)) return;
          if (entry.position.time_unix_nano >= tail->opened_unix_nano - 10 * kNanosPerMinute) {
            tail->replayed.insert(entry.position.chunk_key);
          }
        }
        if (!page.next) break;
        std::lock_guard lock(tail->mu);
        tail->after = page.next;
      }
    } catch (const sdk::Error& e) {
      return close(tail, storage_error(e).status());
    }
    {
      std::lock_guard lock(tail->mu);
      tail->live = true;
    }
    go_live(tail);
  }

  // What was announced while the tail replayed, and the replay did not read, goes out now, in
  // order; then the tail takes announcements as they come.
  void go_live(const std::shared_ptr<Tail>& tail) {
    for (;;) {
      std::vector<std::string> waiting;
      {
        std::lock_guard lock(tail->mu);
        if (tail->waiting.empty()) {
          tail->replaying = false;
          tail->catch_up.clear();
          return;
        }
        waiting.swap(tail->waiting);
      }
      try {
        for (const std::string& key : waiting) {
          if (tail->replayed.contains(key)) continue;
          std::optional<StoredChunk> chunk = repository_.chunk(key);
          if (chunk && !send_chunk(tail, *chunk)) return;
        }
      } catch (const sdk::Error& e) {
        return close(tail, storage_error(e).status());
      }
    }
  }

  // A chunk announcement from any host, on the host's delivery thread: noted, and fed to the tails
  // on the pool, one batch at a time.
  void announced(std::string_view payload) {
    {
      std::lock_guard lock(recent_mu_);
      for (size_t start = 0; start < payload.size();) {
        const size_t end = std::min(payload.find('\n', start), payload.size());
        if (end > start)
          recent_.emplace_back(announced_seq_++, std::string(payload.substr(start, end - start)));
        start = end + 1;
      }
      while (recent_.size() > kRecentChunks) recent_.pop_front();
      pending_.emplace_back(payload);
      while (pending_.size() > kPendingAnnouncements) pending_.pop_front();  // the tails fall behind
      if (feeding_) return;
      feeding_ = true;
    }
    try {
      host_.run_blocking_with_status(
          [this](gv_status_code status) {
            if (status == GV_STATUS_OK) return feed_tails();
            std::lock_guard lock(recent_mu_);  // not run (the plugin stops): the next one tries
            feeding_ = false;
          },
          nullptr);
    } catch (const sdk::Error&) {
      std::lock_guard lock(recent_mu_);  // the pool is full: the next announcement tries again
      feeding_ = false;
    }
  }

  void feed_tails() {
    for (;;) {
      std::deque<std::string> batch;
      {
        std::lock_guard lock(recent_mu_);
        if (pending_.empty()) {
          feeding_ = false;
          return;
        }
        batch.swap(pending_);
      }
      for (const std::string& payload : batch) deliver_here(payload);
    }
  }

  void deliver_here(std::string_view payload) {
    std::vector<std::shared_ptr<Tail>> tails;
    {
      std::lock_guard lock(tails_mu_);
      tails_.remove_if([](const std::shared_ptr<Tail>& t) {
        std::lock_guard tail_lock(t->mu);
        return t->ended;
      });
      tails_open_.record(static_cast<double>(tails_.size()));
      tails.assign(tails_.begin(), tails_.end());
    }
    if (tails.empty()) return;
    size_t start = 0;
    while (start < payload.size()) {
      const size_t end = std::min(payload.find('\n', start), payload.size());
      const std::string key(payload.substr(start, end - start));
      start = end + 1;
      if (key.empty()) continue;
      std::optional<StoredChunk> chunk;
      try {
        chunk = repository_.chunk(key);
      } catch (const sdk::Error& e) {
        host_.warn("logging: a live tail could not read stored records: " + std::string(e.what()));
        continue;
      }
      if (!chunk) continue;
      for (const auto& tail : tails) {
        {
          std::lock_guard lock(tail->mu);
          if (tail->ended) continue;
          if (tail->replaying) {
            if (tail->waiting.size() < 10000) {
              tail->waiting.push_back(key);
            } else {
              tail->ended = true;
              tail->stream.finish(sdk::Status(
                  sdk::StatusCode::kResourceExhausted,
                  "the replay fell too far behind the live records; tail again from its last cursor"));
            }
            continue;
          }
        }
        send_chunk(tail, *chunk);
      }
    }
  }

  // A live chunk goes out whole or not at all, and once: a reload's detach waits for it.
  bool send_chunk(const std::shared_ptr<Tail>& tail, const StoredChunk& chunk) {
    if (chunk.stored_unix_ms != 0 && chunk.stored_unix_ms < tail->received_from_unix_nano / 1'000'000) {
      return true;  // stored before the tail opened
    }
    // The replay read it, and its announcement came after the replay was over. (The set is filled
    // only while the tail replays; live delivery starts after that, under mu.)
    if (tail->replayed.contains(chunk.key)) return true;
    std::vector<pb::LogEntry> messages;
    for (const Entry& entry : service_.matching(chunk, tail->filter, std::nullopt))
      fill(messages.emplace_back(), entry);
    {
      std::lock_guard lock(tail->mu);
      if (tail->ended) return false;
      if (!tail->first_delivery(chunk.key)) return true;
      for (const pb::LogEntry& message : messages) {
        if (!tail->stream.write(message)) return too_slow(tail, lock);
      }
      return true;
    }
  }

  // A replayed record; the tail's place moves past it.
  bool send(const std::shared_ptr<Tail>& tail, const Entry& entry) {
    pb::LogEntry message;
    fill(message, entry);
    std::lock_guard lock(tail->mu);
    if (tail->ended) return false;
    if (!tail->stream.write(message)) return too_slow(tail, lock);
    tail->after = entry.position;
    return true;
  }

  bool too_slow(const std::shared_ptr<Tail>& tail, std::lock_guard<std::mutex>&) {
    tail->ended = true;
    tail->stream.finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                    "the client reads too slowly; tail again from the last cursor it got"));
    // Forgotten by the next delivery or at shutdown: tails_mu_ is not taken under a tail's lock.
    return false;
  }

  void forget(const std::shared_ptr<Tail>& tail) {
    std::lock_guard lock(tails_mu_);
    tails_.remove(tail);
    tails_open_.record(static_cast<double>(tails_.size()));
  }

  void flush_sink() {
    const elasticsearch::FlushReport report = sink_->flush();
    const auto delta = [](uint64_t now, uint64_t& before) {
      const auto d = static_cast<double>(now - before);
      before = now;
      return d;
    };
    es_shipped_.record(delta(sink_->shipped(), es_reported_.shipped));
    es_dropped_.record(delta(sink_->dropped(), es_reported_.dropped));
    es_rejected_.record(delta(sink_->rejected(), es_reported_.rejected));
    es_failed_.record(delta(sink_->failed_requests(), es_reported_.failed));
    es_buffered_.record(static_cast<double>(sink_->buffered()));
    // Its problems are logged once a minute at most: each line is a record that goes there too.
    if ((report.error.empty() && report.rejections.empty()) ||
        std::chrono::steady_clock::now() - es_last_warning_ < std::chrono::minutes(1)) {
      return;
    }
    es_last_warning_ = std::chrono::steady_clock::now();
    std::string message = "logging: Elasticsearch at " + host_.config_string("elasticsearch_url") + ": ";
    message += !report.error.empty() ? report.error
                                     : "refused " + std::to_string(report.rejected) + " record(s), e.g. " +
                                           report.rejections.front();
    host_.warn(message);
  }

  void enforce_retention() {
    const RetentionReport report = service_.enforce_retention();
    if (report.hours_dropped == 0) return;
    retention_dropped_.record(static_cast<double>(report.records_dropped));
    host_.info("logging: retention dropped " + std::to_string(report.records_dropped) + " records (" +
               std::to_string(report.bytes_dropped) + " bytes) in " + std::to_string(report.hours_dropped) +
               " hour(s) of one severity each");
  }

  sdk::Host host_;
  StoreLogRepository repository_;
  LogService service_;
  int64_t max_records_per_client_per_s_;
  int64_t client_lines_per_player_per_minute_;
  size_t max_tails_;
  sdk::Metric stored_, refused_, retention_dropped_, tails_open_;
  static constexpr size_t kRecentChunks = 4096;
  std::mutex recent_mu_;
  std::deque<std::pair<uint64_t, std::string>> recent_;  // (announcement number, chunk key)
  uint64_t announced_seq_ = 0;
  static constexpr size_t kPendingAnnouncements = 10000;
  std::deque<std::string> pending_;  // announcements the tails have not been fed yet
  bool feeding_ = false;             // feed_tails is queued or running
  std::mutex tails_mu_;
  std::list<std::shared_ptr<Tail>> tails_;
  std::unique_ptr<elasticsearch::ElasticsearchSink> sink_;
  sdk::Metric es_shipped_, es_dropped_, es_rejected_, es_failed_, es_buffered_;
  struct {
    uint64_t shipped = 0, dropped = 0, rejected = 0, failed = 0;
  } es_reported_;
  std::chrono::steady_clock::time_point es_last_warning_{};
  sdk::Timer sink_timer_;
  sdk::Subscription announcements_;
  sdk::Timer retention_timer_;
};

std::string TailSession::detach() {
  return plugin_.detach(tail_);
}

void TailSession::on_cancel() {
  plugin_.close(tail_, sdk::Status(sdk::StatusCode::kCancelled, "cancelled"));
}

}  // namespace

GAMEVERSE_PLUGIN(LoggingPlugin, "logging", "0.1.0",
                 "Centralized logs: OTLP ingest, queries, live tails, retention")
