#include "platform/log_shipping.hpp"

#include <google/protobuf/arena.h>
#include <spdlog/spdlog.h>

#include <future>

#include "config/access.hpp"
#include "logging/context.hpp"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "platform/metrics.hpp"
#include "platform/service_calls.hpp"
#include "plugin/manager.hpp"

namespace gameverse::platform {

namespace otlp = opentelemetry::proto;

namespace {

class ShippingSink final : public spdlog::sinks::sink {
 public:
  explicit ShippingSink(std::weak_ptr<LogShipper> shipper) : shipper_(std::move(shipper)) {}
  void log(const spdlog::details::log_msg& msg) override {
    const std::shared_ptr<LogShipper> shipper = shipper_.lock();
    if (!shipper) return;
    LogShipper::Line line;
    line.time_unix_nano =
        std::chrono::duration_cast<std::chrono::nanoseconds>(msg.time.time_since_epoch()).count();
    line.level = static_cast<int>(msg.level);
    line.logger.assign(msg.logger_name.data(), msg.logger_name.size());
    if (const uint64_t* generation = logging::plugin_line_generation()) line.generation = *generation;
    if (const logging::CallLogContext* call = logging::current_call()) line.request_id = call->request_id;
    line.message.assign(msg.payload.data(), msg.payload.size());
    shipper->offer(std::move(line));
  }
  void flush() override {}
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

 private:
  std::weak_ptr<LogShipper> shipper_;
};

// spdlog's levels on OpenTelemetry's severity scale.
int severity_of(int level) {
  switch (level) {
    case spdlog::level::trace: return 1;
    case spdlog::level::debug: return 5;
    case spdlog::level::info: return 9;
    case spdlog::level::warn: return 13;
    case spdlog::level::err: return 17;
    case spdlog::level::critical: return 21;
    default: return 0;
  }
}

void attribute(otlp::logs::v1::LogRecord& record, const char* key, const std::string& value) {
  otlp::common::v1::KeyValue* kv = record.add_attributes();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

}  // namespace

LogShipper::LogShipper(LogShippingOptions options, const Platform& platform)
    : options_(std::move(options)), platform_(platform) {
  if (platform_.metrics != nullptr) {
    shipped_id_ =
        platform_.metrics->register_metric("gameverse", {GV_METRIC_COUNTER,
                                                         "gameverse_log_lines_shipped_total",
                                                         "Host and plugin log lines the logging service took",
                                                         {},
                                                         {}});
    dropped_id_ = platform_.metrics->register_metric(
        "gameverse",
        {GV_METRIC_COUNTER,
         "gameverse_log_lines_dropped_total",
         "Host and plugin log lines not shipped: the queue was full, or the logging service failed",
         {"reason"},
         {}});
  }
}

LogShipper::~LogShipper() {
  stop();
}

std::shared_ptr<spdlog::sinks::sink> LogShipper::sink() {
  return std::make_shared<ShippingSink>(weak_from_this());
}

void LogShipper::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void LogShipper::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    give_up_ = std::chrono::steady_clock::now() + options_.stop_within;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t LogShipper::shipped() const {
  std::lock_guard lock(mu_);
  return shipped_;
}

uint64_t LogShipper::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_full_ + dropped_failed_;
}

void LogShipper::offer(Line line) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;  // the host is stopping: the line is on stderr, not shipped
    if (queue_.size() >= options_.queue_lines) {
      ++dropped_full_;
      return;
    }
    queue_.push_back(std::move(line));
    wake = queue_.size() == options_.batch_lines;
  }
  if (wake) wake_.notify_one();
}

void LogShipper::run() {
  auto last_report = std::chrono::steady_clock::now();
  uint64_t reported_full = 0, reported_failed = 0;
  for (;;) {
    std::deque<Line> batch;
    bool last = false;
    {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, options_.flush_interval,
                     [&] { return stopping_ || queue_.size() >= options_.batch_lines; });
      last = stopping_;
      const size_t n = std::min(queue_.size(), options_.batch_lines);
      batch.insert(batch.end(), std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    if (!batch.empty()) {
      const size_t lines = batch.size();
      const bool sent = !(last && std::chrono::steady_clock::now() > give_up_) && send(batch);
      if (sent && platform_.metrics != nullptr) {
        platform_.metrics->record("gameverse", shipped_id_, {}, static_cast<double>(lines));
      }
      std::lock_guard lock(mu_);
      (sent ? shipped_ : dropped_failed_) += lines;
    }
    uint64_t full = 0, failed = 0;
    {
      std::lock_guard lock(mu_);
      full = dropped_full_;
      failed = dropped_failed_;
    }
    if (platform_.metrics != nullptr) {
      platform_.metrics->record("gameverse", dropped_id_, {"queue_full"},
                                static_cast<double>(full - reported_full));
      platform_.metrics->record("gameverse", dropped_id_, {"failed"},
                                static_cast<double>(failed - reported_failed));
    }
    const auto now = std::chrono::steady_clock::now();
    if ((full != reported_full || failed != reported_failed) &&
        (last || now - last_report >= options_.drop_report_interval)) {
      spdlog::warn(
          "log shipping dropped {} line(s) since the last report: {} with the queue full, {} the logging "
          "service did not take",
          (full - reported_full) + (failed - reported_failed), full - reported_full,
          failed - reported_failed);
      last_report = now;
      reported_full = full;
      reported_failed = failed;
    }
    if (last) {
      std::lock_guard lock(mu_);
      if (queue_.empty()) return;
    }
  }
}

bool LogShipper::send(std::deque<Line>& batch) {
  {
    const auto routes = platform_.routes ? platform_.routes() : nullptr;
    if (routes == nullptr || !routes->contains(kOtlpLogsExport)) return false;
  }
  // On an arena over a block kept from batch to batch: a batch costs no allocation per record.
  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = arena_block_.data();
  arena_options.initial_block_size = arena_block_.size();
  google::protobuf::Arena arena(arena_options);
  auto& request =
      *google::protobuf::Arena::CreateMessage<otlp::collector::logs::v1::ExportLogsServiceRequest>(&arena);
  otlp::logs::v1::ResourceLogs* resource_logs = request.add_resource_logs();
  auto* resource = resource_logs->mutable_resource();
  const std::pair<const char*, std::string> resource_attributes[] = {{"service.name", "gameverse"},
                                                                     {"host.name", options_.host_name}};
  for (const auto& [key, value] : resource_attributes) {
    otlp::common::v1::KeyValue* kv = resource->add_attributes();
    kv->set_key(key);
    kv->mutable_value()->set_string_value(value);
  }
  // One scope per writer: the host ("gameverse"), or a plugin's generation, named in the scope's
  // attributes rather than on every record.
  struct Scope {
    const std::string* logger;
    uint64_t generation;
    otlp::logs::v1::ScopeLogs* logs;
  };
  std::vector<Scope> scopes;
  auto scope_of = [&](const Line& line) {
    for (const Scope& scope : scopes) {
      if (*scope.logger == line.logger && scope.generation == line.generation) return scope.logs;
    }
    otlp::logs::v1::ScopeLogs* logs = resource_logs->add_scope_logs();
    auto* scope = logs->mutable_scope();
    scope->set_name(line.logger);
    if (line.logger != "gameverse") {
      otlp::common::v1::KeyValue* plugin = scope->add_attributes();
      plugin->set_key("gameverse.plugin");
      plugin->mutable_value()->set_string_value(line.logger);
      otlp::common::v1::KeyValue* generation = scope->add_attributes();
      generation->set_key("gameverse.generation");
      generation->mutable_value()->set_int_value(static_cast<int64_t>(line.generation));
    }
    scopes.push_back({&line.logger, line.generation, logs});
    return logs;
  };
  for (Line& line : batch) {
    otlp::logs::v1::LogRecord* record = scope_of(line)->add_log_records();
    record->set_time_unix_nano(static_cast<uint64_t>(line.time_unix_nano));
    record->set_severity_number(static_cast<otlp::logs::v1::SeverityNumber>(severity_of(line.level)));
    record->mutable_body()->set_string_value(std::move(line.message));
    if (!line.request_id.empty()) attribute(*record, "gameverse.request_id", line.request_id);
  }
  auto outcome = std::make_shared<std::promise<bool>>();
  std::future<bool> sent = outcome->get_future();
  CallOrigin origin;
  origin.peer = "inproc:gameverse";
  // The host ships its own lines: it is the operator, whom every access policy lets through.
  origin.user_id = "gameverse";
  origin.roles = {std::string(config::kOperatorRole)};
  origin.deadline_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                (std::chrono::system_clock::now() + options_.call_timeout).time_since_epoch())
                                .count();
  request.SerializeToString(&encoded_);
  call_unary_for_client(platform_, std::move(origin), kOtlpLogsExport, encoded_,
                        [outcome](gv_status_code code, std::string_view, std::string_view) {
                          outcome->set_value(code == GV_STATUS_OK);
                        });
  // The deadline ends the call; waiting a little longer only covers the answer's way back.
  if (sent.wait_for(options_.call_timeout + std::chrono::seconds(1)) != std::future_status::ready)
    return false;
  return sent.get();
}

}  // namespace gameverse::platform
