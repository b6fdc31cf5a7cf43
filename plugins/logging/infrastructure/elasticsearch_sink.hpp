// Ships log records to Elasticsearch's `_bulk` API over HTTP or HTTPS (Boost.Beast, OpenSSL).
// offer() only copies into a bounded buffer; flush() does the network work on the thread that
// calls it — the sink starts no threads, so the plugin calls flush() from a host timer on the
// blocking pool.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "domain/elasticsearch_bulk.hpp"
#include "domain/log_record.hpp"

namespace gameverse::logging::elasticsearch {

// Where to send: "http[s]://host[:port][/path prefix]". The host may be a name, an IPv4 address
// or an IPv6 address in brackets; the port defaults to 80 (443 for https); a prefix (a proxy's
// "/es") goes before "/_bulk".
struct Endpoint {
  bool tls = false;  // https: the server's certificate is verified, and must name the host
  std::string host;
  uint16_t port = 80;
  std::string path_prefix;  // "" or "/es" (never ending in "/")
  std::string bulk_target() const { return path_prefix + "/_bulk"; }
};

// Throws std::invalid_argument naming `field` and the fault (another scheme, user:password@ in the
// URL, a query, a bad port, ...).
Endpoint parse_endpoint(std::string_view url, std::string_view field = "elasticsearch_url");

struct SinkOptions {
  std::string url;                                  // elasticsearch_url
  std::string index_pattern{kDefaultIndexPattern};  // elasticsearch_index
  std::string authorization;                        // elasticsearch_authorization: "ApiKey ...", "Basic ..."
  std::string ca_file;             // elasticsearch_ca_file: PEM CAs to trust for https; empty: the system's
  size_t batch_records = 1000;     // elasticsearch_batch_records: records per _bulk request
  size_t buffer_records = 50'000;  // elasticsearch_buffer_records
  size_t buffer_bytes = 64 << 20;  // elasticsearch_buffer_bytes
  std::chrono::milliseconds timeout{10'000};  // elasticsearch_timeout_ms: connect + send + answer
  BackoffPolicy backoff;                      // elasticsearch_retry_initial_ms / _max_ms
  // The sink's clock, for backoff; tests replace it.
  std::function<std::chrono::steady_clock::time_point()> clock = [] {
    return std::chrono::steady_clock::now();
  };
};

// What one flush() did.
struct FlushReport {
  size_t requests = 0;                  // _bulk requests answered or failed
  size_t stored = 0;                    // records Elasticsearch took
  size_t retrying = 0;                  // records kept to send again (per-item 429/5xx, or a failed request)
  size_t rejected = 0;                  // records refused for good
  bool backing_off = false;             // nothing was sent: a previous failure's wait is not over
  std::string error;                    // why the last request failed, empty when none did
  std::vector<std::string> rejections;  // the first few reasons for rejected records (at most 8)
};

class ElasticsearchSink {
 public:
  // Checks every option and throws std::invalid_argument naming the config key at fault.
  explicit ElasticsearchSink(SinkOptions options);
  ~ElasticsearchSink();
  ElasticsearchSink(const ElasticsearchSink&) = delete;
  ElasticsearchSink& operator=(const ElasticsearchSink&) = delete;

  // Copies the records into the buffer; those that do not fit are dropped and counted (the
  // newest go, see RecordBuffer). Never waits for the network; safe from any thread, also while
  // a flush() runs. Returns how many were taken.
  size_t offer(std::span<const LogRecord> records);

  // Sends what was waiting when it started, `batch_records` per request on one connection, each
  // request bounded by `timeout`. Items Elasticsearch asks to have again (429, 5xx), and whole
  // batches of a failed request (no answer, 429, 5xx, 401, ...), go back to the front of the
  // buffer and the flush stops; they wait out the backoff: a flush() before it ends sends nothing.
  // A whole request refused with 400 or 413 is sent again in halves at once, down to single
  // records, and a single record so refused is rejected. Blocks the calling thread; a flush()
  // while another runs returns at once with an empty report.
  FlushReport flush();

  // Counters since construction, for metrics.
  uint64_t shipped() const { return shipped_; }                  // records stored by Elasticsearch
  uint64_t dropped() const { return buffer_.dropped(); }         // records the full buffer turned away
  uint64_t rejected() const { return rejected_; }                // records refused for good (mapping errors)
  uint64_t retried() const { return retried_; }                  // records sent again (counted per retry)
  uint64_t failed_requests() const { return failed_requests_; }  // requests with no usable answer
  size_t buffered() const { return buffer_.held(); }             // records waiting, including in flight

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  struct Connection;
  struct Tls;
  struct Answer {
    unsigned status = 0;
    std::string body;
  };
  // One POST on `connection` (opened when needed); throws std::runtime_error when there is no
  // complete answer within the timeout.
  Answer post(Connection& connection, std::string body);
  // Verifies the server's certificate against the trusted CAs and the host's name.
  void handshake(Connection& connection);

  SinkOptions options_;
  Endpoint endpoint_;
  RecordBuffer buffer_;
  std::unique_ptr<Tls> tls_;  // for https only
  std::mutex flush_mutex_;    // one flush at a time; guards backoff_ and retry_after_
  Backoff backoff_;
  std::chrono::steady_clock::time_point retry_after_{};
  std::atomic<uint64_t> shipped_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> retried_{0};
  std::atomic<uint64_t> failed_requests_{0};
};

}  // namespace gameverse::logging::elasticsearch
