// Ships the host's and every plugin's log lines to the service in this host that serves OTLP's
// LogsService/Export (the logging plugin), as OpenTelemetry log records. A line is queued in O(1)
// by the logger that writes it and never waits: when the bounded queue is full it is dropped and
// counted. One thread of the host's sends the queue in batches through the in-process call path.
#pragma once

#include <spdlog/sinks/sink.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "platform/platform.hpp"

namespace gameverse::platform {

inline constexpr const char* kOtlpLogsExport = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

struct LogShippingOptions {
  size_t queue_lines = 10000;  // lines waiting at most; more are dropped and counted
  size_t batch_lines = 1000;   // lines per Export call at most
  std::chrono::milliseconds flush_interval{250};
  std::chrono::milliseconds call_timeout{10000};
  std::chrono::seconds drop_report_interval{10};  // how often drops are logged, at most
  std::chrono::milliseconds stop_within{2000};    // stop() sends what is queued for this long at most
  std::string host_name;                          // resource attribute host.name
};

class LogShipper : public std::enable_shared_from_this<LogShipper> {
 public:
  LogShipper(LogShippingOptions options, const Platform& platform);
  ~LogShipper();
  LogShipper(const LogShipper&) = delete;
  LogShipper& operator=(const LogShipper&) = delete;

  // The sink to add to the host's logger: every line the host and its plugins write reaches it. It
  // holds the shipper weakly, so lines written after the shipper is gone are simply not shipped.
  std::shared_ptr<spdlog::sinks::sink> sink();

  // Starts sending; lines queue from the moment the sink is added.
  void start();
  // Sends what is queued (for stop_within at most), then stops. Lines written after it are dropped.
  void stop();

  uint64_t shipped() const;
  uint64_t dropped() const;

  struct Line {
    int64_t time_unix_nano = 0;
    int level = 0;  // spdlog::level::level_enum
    std::string logger;
    uint64_t generation = 0;
    std::string request_id;
    std::string message;
  };
  // For the sink: queues `line`, or counts it dropped when the queue is full.
  void offer(Line line);

 private:
  void run();
  bool send(std::deque<Line>& batch);

  LogShippingOptions options_;
  const Platform& platform_;
  uint64_t shipped_id_ = 0;
  uint64_t dropped_id_ = 0;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Line> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point give_up_;  // set by stop()
  uint64_t shipped_ = 0;
  uint64_t dropped_full_ = 0;
  uint64_t dropped_failed_ = 0;
  std::thread thread_;
  // The shipping thread's own: kept from batch to batch.
  std::vector<char> arena_block_ = std::vector<char>(1024 * 1024);
  std::string encoded_;
};

}  // namespace gameverse::platform
