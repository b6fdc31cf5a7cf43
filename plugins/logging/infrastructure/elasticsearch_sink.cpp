#include "infrastructure/elasticsearch_sink.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <optional>
#include <stdexcept>

namespace gameverse::logging::elasticsearch {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// Asks Elasticsearch to leave out of its answer what the sink does not read (ids, versions,
// shards): an answer of a few bytes per item instead of a few hundred.
constexpr std::string_view kFilterPath =
    "?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";
constexpr size_t kMaxReportedRejections = 8;
constexpr size_t kMaxQuotedAnswerBytes = 256;

std::string lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

bool has_control_characters(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// The start of an answer, for an error message: printable and short.
std::string quote(std::string_view body) {
  std::string text(body.substr(0, kMaxQuotedAnswerBytes));
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  if (body.size() > kMaxQuotedAnswerBytes) text += "...";
  return text;
}

}  // namespace

Endpoint parse_endpoint(std::string_view url, std::string_view field) {
  const std::string where(field);
  const std::string lower = lowercase(url);
  Endpoint endpoint;
  endpoint.tls = lower.starts_with("https://");
  if (!endpoint.tls && !lower.starts_with("http://")) {
    throw std::invalid_argument(where + ": must start with http:// or https://");
  }
  if (endpoint.tls) endpoint.port = 443;
  if (has_control_characters(url) || url.find(' ') != std::string_view::npos) {
    throw std::invalid_argument(where + ": contains spaces or control characters");
  }
  std::string_view rest = url.substr(endpoint.tls ? 8 : 7);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    throw std::invalid_argument(where + ": a query or fragment is not allowed");
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    throw std::invalid_argument(where + ": no user:password@ in the URL; set elasticsearch_authorization");
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument(where + ": an IPv6 address without ]");
    endpoint.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        throw std::invalid_argument(where + ": unexpected text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) throw std::invalid_argument(where + ": an empty port");
    }
  } else {
    const size_t colon = authority.find(':');
    endpoint.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) throw std::invalid_argument(where + ": an empty port");
    }
  }
  if (endpoint.host.empty()) throw std::invalid_argument(where + ": no host");
  if (!port.empty()) {
    if (port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      throw std::invalid_argument(where + ": the port is not a number");
    }
    const int number = std::stoi(std::string(port));
    if (number < 1 || number > 65535) throw std::invalid_argument(where + ": the port is not in 1..65535");
    endpoint.port = static_cast<uint16_t>(number);
  }
  while (path.ends_with('/')) path.remove_suffix(1);
  endpoint.path_prefix = std::string(path);
  return endpoint;
}

struct ElasticsearchSink::Tls {
  asio::ssl::context context{asio::ssl::context::tls_client};
};

// One connection for the requests of one flush(); the io_context runs only inside post(), on the
// caller's thread.
struct ElasticsearchSink::Connection {
  explicit Connection(Tls* tls) : tls_context(tls) {}

  // A fresh stream (a TLS stream cannot be reused once closed).
  void reset() {
    secure.reset();
    plain.reset();
    if (tls_context != nullptr) {
      secure.emplace(io, tls_context->context);
    } else {
      plain.emplace(io);
    }
    buffer.clear();
  }
  beast::tcp_stream& tcp() { return secure ? secure->next_layer() : *plain; }
  // Calls `use` with the stream HTTP goes over.
  template <typename Use>
  void with_stream(Use&& use) {
    if (secure) {
      use(*secure);
    } else {
      use(*plain);
    }
  }
  // No TLS close_notify: the connection is done with, and closing must not wait for the peer.
  void close() {
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
    open = false;
  }
  ~Connection() {
    if (open) close();
  }

  Tls* tls_context;
  asio::io_context io;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  std::optional<beast::tcp_stream> plain;
  beast::flat_buffer buffer;
  bool open = false;
};

ElasticsearchSink::ElasticsearchSink(SinkOptions options)
    : options_(std::move(options)),
      endpoint_(parse_endpoint(options_.url)),
      buffer_(options_.buffer_records, options_.buffer_bytes),
      backoff_(options_.backoff) {
  validate_index_pattern(options_.index_pattern, "elasticsearch_index");
  if (has_control_characters(options_.authorization)) {
    throw std::invalid_argument("elasticsearch_authorization: contains control characters or line breaks");
  }
  if (options_.batch_records == 0)
    throw std::invalid_argument("elasticsearch_batch_records: must be at least 1");
  if (options_.timeout.count() <= 0)
    throw std::invalid_argument("elasticsearch_timeout_ms: must be positive");
  if (!options_.clock) throw std::invalid_argument("clock: not set");
  if (!endpoint_.tls) {
    if (!options_.ca_file.empty())
      throw std::invalid_argument("elasticsearch_ca_file: only for https:// URLs");
    return;
  }
  tls_ = std::make_unique<Tls>();
  beast::error_code error;
  if (options_.ca_file.empty()) {
    tls_->context.set_default_verify_paths(error);
  } else {
    tls_->context.load_verify_file(options_.ca_file, error);
  }
  if (error) {
    throw std::invalid_argument(
        "elasticsearch_ca_file: cannot load " +
        (options_.ca_file.empty() ? std::string("the system's CAs") : options_.ca_file) + ": " +
        error.message());
  }
  tls_->context.set_verify_mode(asio::ssl::verify_peer);
}

ElasticsearchSink::~ElasticsearchSink() = default;

size_t ElasticsearchSink::offer(std::span<const LogRecord> records) {
  return buffer_.offer(records);
}

ElasticsearchSink::Answer ElasticsearchSink::post(Connection& connection, std::string body) {
  beast::error_code error;
  const auto run = [&] {
    connection.io.restart();
    connection.io.run();
  };

  if (!connection.open) {
    connection.reset();
    // One deadline for the whole exchange: every operation below is cut off by it.
    connection.tcp().expires_after(options_.timeout);
    // Resolution is synchronous (an asynchronous one would start a thread) and not bounded by the
    // deadline; a numeric address needs no lookup.
    tcp::resolver resolver(connection.io);
    const auto addresses = resolver.resolve(endpoint_.host, std::to_string(endpoint_.port), error);
    if (error) throw std::runtime_error("cannot resolve " + endpoint_.host + ": " + error.message());
    connection.tcp().async_connect(addresses, [&](beast::error_code e, const tcp::endpoint&) { error = e; });
    run();
    if (error) {
      connection.close();
      throw std::runtime_error("cannot connect to " + endpoint_.host + ":" + std::to_string(endpoint_.port) +
                               ": " + error.message());
    }
    connection.open = true;
    if (connection.secure) handshake(connection);
  } else {
    connection.tcp().expires_after(options_.timeout);
  }

  bhttp::request<bhttp::string_body> request{bhttp::verb::post,
                                             endpoint_.bulk_target() + std::string(kFilterPath), 11};
  const bool ipv6 = endpoint_.host.find(':') != std::string::npos;
  request.set(bhttp::field::host,
              (ipv6 ? "[" + endpoint_.host + "]" : endpoint_.host) + ":" + std::to_string(endpoint_.port));
  request.set(bhttp::field::content_type, "application/x-ndjson");
  request.set(bhttp::field::accept, "application/json");
  request.set(bhttp::field::user_agent, "gameverse-logging");
  if (!options_.authorization.empty()) request.set(bhttp::field::authorization, options_.authorization);
  request.keep_alive(true);
  request.body() = std::move(body);
  request.prepare_payload();

  bhttp::response_parser<bhttp::string_body> parser;
  // The answer with filter_path is a few dozen bytes per item; errors add their reasons.
  parser.body_limit((uint64_t{1} << 20) + (uint64_t{8} << 10) * options_.batch_records);
  connection.with_stream([&](auto& stream) {
    bhttp::async_write(stream, request, [&](beast::error_code e, size_t) {
      error = e;
      if (e) return;
      bhttp::async_read(stream, connection.buffer, parser, [&](beast::error_code r, size_t) { error = r; });
    });
  });
  run();
  if (error) {
    connection.close();
    if (error == beast::error::timeout) {
      throw std::runtime_error("no answer within " + std::to_string(options_.timeout.count()) + " ms");
    }
    throw std::runtime_error("POST " + endpoint_.bulk_target() + ": " + error.message());
  }
  auto response = parser.release();
  if (!response.keep_alive()) connection.close();
  return Answer{response.result_int(), std::move(response.body())};
}

void ElasticsearchSink::handshake(Connection& connection) {
  auto& secure = *connection.secure;
  // SNI for names (never for addresses), and the certificate must name the host asked for.
  beast::error_code not_an_address;
  asio::ip::make_address(endpoint_.host, not_an_address);
  if (not_an_address && !SSL_set_tlsext_host_name(secure.native_handle(), endpoint_.host.c_str())) {
    connection.close();
    throw std::runtime_error("cannot set the TLS server name " + endpoint_.host);
  }
  secure.set_verify_callback(asio::ssl::host_name_verification(endpoint_.host));
  beast::error_code error;
  secure.async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e) { error = e; });
  connection.io.restart();
  connection.io.run();
  if (error) {
    connection.close();
    const std::string why = error == beast::error::timeout
                                ? "no answer within " + std::to_string(options_.timeout.count()) + " ms"
                                : error.message();
    throw std::runtime_error("TLS handshake with " + endpoint_.host + ":" + std::to_string(endpoint_.port) +
                             ": " + why);
  }
}

FlushReport ElasticsearchSink::flush() {
  FlushReport report;
  std::unique_lock lock(flush_mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return report;
  if (options_.clock() < retry_after_) {
    report.backing_off = true;
    return report;
  }
  // Only what was there at the start: a flood arriving meanwhile cannot keep this call going.
  size_t budget = buffer_.size();
  // Halved while Elasticsearch refuses whole requests as too large or malformed, so that one bad
  // record ends up alone and rejected instead of holding back everything behind it.
  size_t batch_limit = options_.batch_records;
  Connection connection(tls_.get());
  while (budget > 0) {
    std::vector<LogRecord> batch = buffer_.take(std::min(batch_limit, budget));
    if (batch.empty()) break;
    budget -= batch.size();
    ++report.requests;
    std::vector<LogRecord> again;
    try {
      const Answer answer = post(connection, bulk_body(batch, options_.index_pattern));
      if (answer.status == 400 || answer.status == 413) {
        ++failed_requests_;
        report.error = "HTTP " + std::to_string(answer.status) + ": " + quote(answer.body);
        if (batch.size() == 1) {
          buffer_.release(batch);
          ++report.rejected;
          ++rejected_;
          if (report.rejections.size() < kMaxReportedRejections) report.rejections.push_back(report.error);
        } else {
          batch_limit = batch.size() / 2;
          budget += batch.size();
          retried_ += batch.size();
          buffer_.give_back(std::move(batch));
        }
        continue;
      }
      if (answer.status < 200 || answer.status >= 300) {
        throw std::runtime_error("HTTP " + std::to_string(answer.status) + ": " + quote(answer.body));
      }
      BulkResult result;
      try {
        result = parse_bulk_response(answer.body, batch.size());
      } catch (const std::invalid_argument& e) {
        throw std::runtime_error(std::string("unreadable _bulk answer: ") + e.what());
      }
      std::vector<LogRecord> done;
      done.reserve(batch.size());
      size_t stored = 0;
      size_t rejected = 0;
      for (size_t i = 0; i < batch.size(); ++i) {
        const ItemResult& item = result.items[i];
        switch (item.outcome) {
          case ItemOutcome::kStored: ++stored; break;
          case ItemOutcome::kRetry: again.push_back(std::move(batch[i])); continue;
          case ItemOutcome::kRejected:
            ++rejected;
            if (report.rejections.size() < kMaxReportedRejections) report.rejections.push_back(item.reason);
            break;
        }
        done.push_back(std::move(batch[i]));
      }
      buffer_.release(done);
      report.stored += stored;
      report.rejected += rejected;
      shipped_ += stored;
      rejected_ += rejected;
    } catch (const std::exception& e) {
      ++failed_requests_;
      report.error = e.what();
      again = std::move(batch);
    }
    if (!again.empty()) {
      report.retrying += again.size();
      retried_ += again.size();
      buffer_.give_back(std::move(again));
      // The cluster is busy or failing: give it a rest before anything more.
      retry_after_ = options_.clock() + backoff_.next_delay();
      break;
    }
    backoff_.reset();
  }
  return report;
}

}  // namespace gameverse::logging::elasticsearch
