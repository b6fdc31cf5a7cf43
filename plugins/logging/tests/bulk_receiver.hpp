// A real HTTP receiver on loopback (Boost.Beast, on a thread of the test) standing in for
// Elasticsearch: it records every request and answers from a script, so that tests check the
// _bulk format and inject 429s, 503s, per-item errors and silence.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "run_command.hpp"
#include "temp_dir.hpp"

namespace gameverse::testing::bulk {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

struct Received {
  std::string method;
  std::string target;  // with the query
  std::string content_type;
  std::string authorization;
  std::string body;
  int connection = 0;  // which connection it came on, counting from 1
};

struct Reply {
  unsigned status = 200;
  std::string body;
  bool never_answer = false;  // read the request, then say nothing and keep the connection open
};

inline std::vector<std::string> lines_of(const std::string& body) {
  std::vector<std::string> lines;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// {"errors":...,"items":[...]} with one item per document in `request`, statuses from `status_of`.
inline Reply bulk_answer(const Received& request, const std::function<int(size_t)>& status_of) {
  nlohmann::json items = nlohmann::json::array();
  bool errors = false;
  const size_t count = lines_of(request.body).size() / 2;
  for (size_t i = 0; i < count; ++i) {
    const int status = status_of(i);
    nlohmann::json item = {{"status", status}};
    if (status == 400) {
      item["error"] = {{"type", "mapper_parsing_exception"},
                       {"reason", "failed to parse field [gameverse.generation]"}};
    } else if (status == 429) {
      item["error"] = {{"type", "es_rejected_execution_exception"}, {"reason", "rejected execution"}};
    }
    errors = errors || status >= 300;
    items.push_back({{"index", item}});
  }
  return Reply{200, nlohmann::json{{"took", 3}, {"errors", errors}, {"items", items}}.dump()};
}

inline Reply all_stored(const Received& request) {
  return bulk_answer(request, [](size_t) { return 201; });
}

// A certificate for `names` (127.0.0.1 and localhost unless told), made by openssl for the test,
// self-signed: it is its own CA.
class TestCertificate {
 public:
  explicit TestCertificate(const std::string& names = "IP:127.0.0.1,DNS:localhost") {
    const std::string dir = dir_.path().string();
    const auto run = gameverse::testing::run_command("cd " + dir +
                                                     " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
                                                     "-subj /CN=localhost -keyout key.pem -out cert.pem"
                                                     " -addext subjectAltName=" +
                                                     names);
    if (run.exit_code != 0)
      throw std::runtime_error("openssl could not make the certificate:\n" + run.output);
  }
  std::string cert() const { return (dir_.path() / "cert.pem").string(); }
  std::string key() const { return (dir_.path() / "key.pem").string(); }

 private:
  gameverse::testing::TempDir dir_;
};

// An HTTP/1.1 server (HTTPS with a certificate) on 127.0.0.1 and a free port, serving on one
// thread until destroyed.
class BulkReceiver {
 public:
  using Script = std::function<Reply(const Received&, size_t index)>;  // index: 0 for the first request

  explicit BulkReceiver(Script script, const TestCertificate* certificate = nullptr)
      : script_(std::move(script)) {
    if (certificate != nullptr) {
      tls_.emplace(asio::ssl::context::tls_server);
      tls_->use_certificate_chain_file(certificate->cert());
      tls_->use_private_key_file(certificate->key(), asio::ssl::context::pem);
    }
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~BulkReceiver() {
    io_.stop();
    thread_.join();
  }

  int port() const { return acceptor_.local_endpoint().port(); }
  std::string url() const {
    return (tls_ ? "https" : "http") + std::string("://127.0.0.1:") + std::to_string(port());
  }
  std::vector<Received> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    Session(BulkReceiver& owner, tcp::socket socket, int number) : owner(owner), number(number) {
      if (owner.tls_) {
        secure.emplace(std::move(socket), *owner.tls_);
      } else {
        plain.emplace(std::move(socket));
      }
    }

    template <typename Use>
    void with_stream(Use&& use) {
      if (secure) {
        use(*secure);
      } else {
        use(*plain);
      }
    }

    void start() {
      if (!secure) return read();
      secure->async_handshake(asio::ssl::stream_base::server,
                              [self = shared_from_this()](beast::error_code error) {
                                if (!error) self->read();
                              });
    }

    void read() {
      parser.emplace();
      parser->body_limit(64 << 20);
      with_stream([&](auto& stream) {
        bhttp::async_read(stream, buffer, *parser,
                          [self = shared_from_this()](beast::error_code error, size_t) {
                            if (!error) self->answer();
                          });
      });
    }

    void answer() {
      const auto& request = parser->get();
      Received received{std::string(request.method_string()),
                        std::string(request.target()),
                        std::string(request[bhttp::field::content_type]),
                        std::string(request[bhttp::field::authorization]),
                        request.body(),
                        number};
      size_t index = 0;
      {
        std::lock_guard lock(owner.mutex_);
        index = owner.requests_.size();
        owner.requests_.push_back(received);
      }
      const Reply reply = owner.script_(received, index);
      if (reply.never_answer) {
        owner.silent_.push_back(shared_from_this());  // kept open until the receiver goes
        return;
      }
      response.emplace(static_cast<bhttp::status>(reply.status), 11);
      response->set(bhttp::field::content_type, "application/json");
      response->keep_alive(request.keep_alive());
      response->body() = reply.body;
      response->prepare_payload();
      with_stream([&](auto& stream) {
        bhttp::async_write(stream, *response, [self = shared_from_this()](beast::error_code error, size_t) {
          if (!error && self->response->keep_alive()) self->read();
        });
      });
    }

    BulkReceiver& owner;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    std::optional<beast::tcp_stream> plain;
    int number;
    beast::flat_buffer buffer;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser;
    std::optional<bhttp::response<bhttp::string_body>> response;
  };

  void accept() {
    acceptor_.async_accept([this](beast::error_code error, tcp::socket socket) {
      if (error) return;
      std::make_shared<Session>(*this, std::move(socket), ++connections_)->start();
      accept();
    });
  }

  Script script_;
  std::optional<asio::ssl::context> tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  int connections_ = 0;
  std::vector<std::shared_ptr<Session>> silent_;
  mutable std::mutex mutex_;
  std::vector<Received> requests_;
  std::thread thread_;
};

}  // namespace gameverse::testing::bulk
