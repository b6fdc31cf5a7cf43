#include "http/http_server.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_set>

namespace gameverse::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

std::string_view Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && beast::iequals(beast::string_view(key.data(), key.size()),
                                                    beast::string_view(name.data(), name.size())))
      return value;
  }
  return {};
}

void Router::add(std::string method, std::string path, Handler handler) {
  routes_[std::move(path)][std::move(method)] = std::move(handler);
}

void Router::dispatch(const Request& request, const std::shared_ptr<Exchange>& exchange) const {
  const auto path = routes_.find(request.path);
  if (path == routes_.end()) {
    if (fallback_) return fallback_(request, exchange);
    return exchange->respond({404, "text/plain; charset=utf-8", "not found\n", {}});
  }
  const auto& methods = path->second;
  auto handler = methods.find(std::string(request.method));
  if (handler == methods.end() && request.method == "HEAD") handler = methods.find("GET");
  if (handler != methods.end()) return exchange->respond(handler->second(request));
  std::string allow;
  for (const auto& [method, unused] : methods) {
    allow += (allow.empty() ? "" : ", ") + method;
    if (method == "GET") allow += ", HEAD";
  }
  exchange->respond({405, "text/plain; charset=utf-8", "method not allowed\n", {{"Allow", allow}}});
}

std::pair<std::string, uint16_t> split_host_port(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return {"", 0};
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535)
    return {"", 0};
  return {host, static_cast<uint16_t>(std::stoi(port))};
}

namespace {

using Strand = asio::strand<asio::io_context::executor_type>;

class Session;

// Shared by the server and every exchange. Once the server stops, exchanges that outlive it (a
// plugin answering late) post nothing more to its io_context. Sessions waiting for an answer are
// held here: no read or write of theirs is pending then to keep them alive.
struct Loop {
  std::mutex mu;
  bool open = true;
  std::unordered_set<std::shared_ptr<Session>> waiting;
};

// An exchange's steps reach its session on the session's strand: at once when the caller is
// already there (a handler answering before it returns), else posted.
class SessionExchange final : public Exchange {
 public:
  SessionExchange(std::weak_ptr<Session> session, const Session* identity, std::shared_ptr<Loop> loop,
                  std::string peer)
      : session_(std::move(session)), identity_(identity), loop_(std::move(loop)), peer_(std::move(peer)) {}

  void respond(Response response) override;
  void start_stream(Response head) override;
  void write(std::string piece, std::function<void(bool)> sent) override;
  void end() override;
  void on_abandoned(std::function<void()> abandoned) override;
  const std::string& peer() const override { return peer_; }

 private:
  // False when the session is gone (the step never runs).
  template <class Step>
  bool run(Step step);

  std::weak_ptr<Session> session_;
  const Session* identity_;  // compared with the session dispatching on this thread, never followed
  std::shared_ptr<Loop> loop_;
  std::string peer_;
};

// The session whose handler runs on this thread now (inside Router::dispatch): its exchange's
// steps run at once, with no lock and no post.
thread_local Session* dispatching = nullptr;

class DispatchScope {
 public:
  explicit DispatchScope(Session* session) : outer_(std::exchange(dispatching, session)) {}
  ~DispatchScope() { dispatching = outer_; }
  DispatchScope(const DispatchScope&) = delete;
  DispatchScope& operator=(const DispatchScope&) = delete;

 private:
  Session* outer_;
};

// A write's `sent`, called exactly once: with false when the write is dropped unsent (its
// session gone, or the server stopped before the write ran).
class SentOnce {
 public:
  explicit SentOnce(std::function<void(bool)> sent) : sent_(std::move(sent)) {}
  ~SentOnce() { call(false); }
  SentOnce(const SentOnce&) = delete;
  SentOnce& operator=(const SentOnce&) = delete;
  void call(bool ok) {
    if (auto sent = std::exchange(sent_, nullptr)) sent(ok);
  }

 private:
  std::function<void(bool)> sent_;
};

// The client's address as gRPC writes a peer ("ipv4:1.2.3.4:5", "ipv6:%5B::1%5D:5"), IPv4 clients
// of an IPv6 listener as IPv4.
std::string peer_of(const tcp::socket& socket) {
  beast::error_code error;
  const tcp::endpoint remote = socket.remote_endpoint(error);
  if (error) return "unknown";
  auto address = remote.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address.is_v4() ? "ipv4:" + address.to_string() + ":" + std::to_string(remote.port())
                         : "ipv6:%5B" + address.to_string() + "%5D:" + std::to_string(remote.port());
}

// One connection: reads a request, answers it (at once, later, or in pieces), and reads the next
// while the client keeps it alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Strand strand, std::shared_ptr<const Router> router,
          std::shared_ptr<const Limits> limits, std::shared_ptr<HttpServer::Counters> counters,
          std::shared_ptr<Loop> loop)
      : strand_(std::move(strand)),
        stream_(std::move(socket)),
        peer_(peer_of(stream_.socket())),
        router_(std::move(router)),
        limits_(std::move(limits)),
        counters_(std::move(counters)),
        loop_(std::move(loop)) {}
  ~Session() {
    abandon();
    fail_pending();
    --counters_->connections;
  }

  const Strand& strand() const { return strand_; }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(limits_->max_header_bytes);
    parser_->body_limit(limits_->max_body_bytes);
    stream_.expires_after(limits_->request_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  // The exchange's steps, on the strand. Every caller holds a reference to the session.
  void answer(Response response) {
    if (state_ != State::kHandling) return;
    state_ = State::kAnswering;
    abandoned_ = nullptr;
    release();
    if (closed_) return;
    send(std::move(response));
  }

  void start_stream(Response head) {
    if (state_ != State::kHandling) return;
    state_ = State::kStreaming;
    stream_head_.emplace();
    stream_head_->version(version_);
    stream_head_->result(head.status);
    stream_head_->set(bhttp::field::content_type, head.content_type);
    for (const auto& [name, value] : head.headers) stream_head_->insert(name, value);
    // HTTP/1.0 has no chunks: the body ends when the connection closes.
    if (version_ >= 11) {
      stream_head_->chunked(true);
      stream_head_->keep_alive(keep_alive_);
    } else {
      stream_head_->keep_alive(false);
    }
    serializer_.emplace(*stream_head_);
    pending_.push_back({Piece::kHead, {}, nullptr});
    pump();
  }

  void write_piece(std::string piece, std::shared_ptr<SentOnce> sent) {
    if (state_ != State::kStreaming || closed_) return;  // `sent` reports false when dropped
    pending_.push_back({Piece::kData, std::move(piece), std::move(sent)});
    pump();
  }

  void end_stream() {
    if (state_ != State::kStreaming) return;
    state_ = State::kEnding;
    abandoned_ = nullptr;
    pending_.push_back({Piece::kLast, {}, nullptr});
    pump();
  }

  void set_abandoned(std::function<void()> abandoned) {
    if (!awaiting_answer()) return;
    if (closed_) return abandoned();
    abandoned_ = std::move(abandoned);
  }

 private:
  enum class State { kReading, kHandling, kAnswering, kStreaming, kEnding };
  // The handler has not answered yet, or its stream goes on.
  bool awaiting_answer() const { return state_ == State::kHandling || state_ == State::kStreaming; }

  struct Piece {
    enum Kind { kHead, kData, kLast } kind;
    std::string bytes;
    std::shared_ptr<SentOnce> sent;
  };

  void on_read(beast::error_code error, size_t) {
    if (error == bhttp::error::header_limit) return refuse(431, "request header fields too large\n");
    if (error == bhttp::error::body_limit) return refuse(413, "request body too large\n");
    if (error == bhttp::error::end_of_stream || error == beast::error::timeout || error == asio::error::eof ||
        error == asio::error::operation_aborted || error == asio::error::connection_reset) {
      return close();
    }
    if (error) return refuse(400, "bad request\n");
    const auto& request = parser_->get();
    const std::string_view target(request.target().data(), request.target().size());
    const auto question = target.find('?');
    Request routed{std::string_view(request.method_string().data(), request.method_string().size()),
                   target.substr(0, question),
                   question == std::string_view::npos ? std::string_view() : target.substr(question + 1),
                   request.body(),
                   {}};
    for (const auto& field : request) {
      routed.headers.emplace_back(std::string_view(field.name_string().data(), field.name_string().size()),
                                  std::string_view(field.value().data(), field.value().size()));
    }
    keep_alive_ = request.keep_alive();
    head_only_ = request.method() == bhttp::verb::head;
    version_ = request.version();
    state_ = State::kHandling;
    auto exchange = std::make_shared<SessionExchange>(weak_from_this(), this, loop_, peer_);
    {
      const DispatchScope scope(this);  // answers given before dispatch returns go straight out
      try {
        router_->dispatch(routed, exchange);
      } catch (const std::exception& e) {
        spdlog::error("http: {} {}: {}", routed.method, routed.path, e.what());
        exchange->respond({500, "text/plain; charset=utf-8", "internal error\n", {}});
      }
    }
    // Still without an answer: held until it comes, and the client may leave meanwhile, which the
    // handler must learn. (Answers from other threads are posted to this strand: none can come
    // before this returns.)
    if (awaiting_answer()) {
      hold();
      watch_for_close();
    }
  }

  // Held by the loop while an answer is pending, when nothing else may be.
  void hold() {
    std::lock_guard lock(loop_->mu);
    if (loop_->open) held_ = loop_->waiting.insert(shared_from_this()).second;
  }
  void release() {
    if (!held_) return;
    held_ = false;
    std::shared_ptr<Session> self;  // dropped after the lock: the caller holds another reference
    std::lock_guard lock(loop_->mu);
    if (auto it = loop_->waiting.find(shared_from_this()); it != loop_->waiting.end()) {
      self = *it;
      loop_->waiting.erase(it);
    }
  }

  // While an answer is pending nothing more is read from the client; a read of the raw socket
  // (which the request timeout does not cover) notices when it goes. Bytes it gets (a pipelined
  // request) are kept for the next request, up to the header limit; past it they are dropped and
  // the connection closes after the answer.
  void watch_for_close() {
    if (watching_ || closed_) return;
    watching_ = true;
    const bool room = buffer_.size() < limits_->max_header_bytes;
    if (!room) keep_alive_ = false;
    auto into = room ? buffer_.prepare(512) : asio::mutable_buffer(discard_.data(), discard_.size());
    stream_.socket().async_read_some(
        into,
        asio::bind_executor(strand_, [self = shared_from_this(), room](beast::error_code error, size_t size) {
          self->watching_ = false;
          if (room) self->buffer_.commit(size);
          const bool resume = std::exchange(self->resume_reading_, false);
          // End of the stream is the client leaving, as a reset is: a client that only
          // half-closes cannot be told from one that closed, and a call for a client that left
          // must not run on.
          if (error && error != asio::error::operation_aborted) return self->close();
          if (self->awaiting_answer()) return self->watch_for_close();
          if (resume && self->state_ == State::kReading) self->read_request();
        }));
  }

  // The answer is complete: read the next request once the watch has stopped.
  void next_request() {
    state_ = State::kReading;
    if (watching_) {
      resume_reading_ = true;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    read_request();
  }

  void refuse(unsigned status, std::string body) {
    refused_ = true;
    keep_alive_ = false;
    head_only_ = false;
    version_ = 11;
    state_ = State::kAnswering;
    send({status, "text/plain; charset=utf-8", std::move(body), {}});
  }

  void send(Response answer) {
    response_ = {};
    response_.version(version_);
    response_.result(answer.status);
    // 204 and 304 carry no body and no Content-Length (RFC 9110).
    const bool bodiless = answer.status == 204 || answer.status == 304;
    if (!bodiless) response_.set(bhttp::field::content_type, answer.content_type);
    for (const auto& [name, value] : answer.headers) response_.insert(name, value);
    response_.keep_alive(keep_alive_);
    if (!bodiless) response_.content_length(answer.body.size());
    if (!head_only_ && !bodiless) response_.body() = std::move(answer.body);
    stream_.expires_after(limits_->request_timeout);
    bhttp::async_write(
        stream_, response_,
        asio::bind_executor(strand_, beast::bind_front_handler(&Session::on_write, shared_from_this())));
  }

  void on_write(beast::error_code error, size_t) {
    if (!error && refused_) return drain_then_close();
    if (error || !response_.keep_alive()) return close();
    next_request();
  }

  // Sends the pieces of a stream one after the other.
  void pump() {
    if (writing_ || pending_.empty()) return;
    if (closed_) return fail_pending();
    writing_ = true;
    stream_.expires_after(limits_->request_timeout);
    auto done = asio::bind_executor(strand_, [self = shared_from_this()](beast::error_code error, size_t) {
      self->writing_ = false;
      Piece piece = std::move(self->pending_.front());
      self->pending_.pop_front();
      if (error) {
        self->close();
        if (piece.sent) piece.sent->call(false);
        return self->fail_pending();
      }
      if (piece.sent) piece.sent->call(true);
      if (piece.kind == Piece::kLast) {
        self->release();
        if (!self->stream_head_->keep_alive() || !self->keep_alive_) return self->close();
        self->stream_head_.reset();
        return self->next_request();
      }
      self->pump();
    });
    Piece& piece = pending_.front();
    const bool chunked = stream_head_->chunked();
    switch (piece.kind) {
      case Piece::kHead: bhttp::async_write_header(stream_, *serializer_, std::move(done)); break;
      case Piece::kData:
        if (chunked) {
          asio::async_write(stream_, bhttp::make_chunk(asio::buffer(piece.bytes)), std::move(done));
        } else {
          asio::async_write(stream_, asio::buffer(piece.bytes), std::move(done));
        }
        break;
      case Piece::kLast:
        if (chunked) {
          asio::async_write(stream_, bhttp::make_chunk_last(), std::move(done));
        } else {
          asio::post(strand_, [done = std::move(done)]() mutable { done(beast::error_code(), 0); });
        }
        break;
    }
  }

  void fail_pending() {
    while (!pending_.empty()) {
      Piece piece = std::move(pending_.front());
      pending_.pop_front();
      if (piece.sent) piece.sent->call(false);
    }
  }

  // After a refusal the client may still be sending what was refused; closing with it unread
  // would reset the connection and lose the answer. So: stop sending, read and drop until the
  // client closes or the timeout set for the answer runs out.
  void drain_then_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    discard_until_closed();
  }

  void discard_until_closed() {
    stream_.async_read_some(
        asio::buffer(discard_),
        asio::bind_executor(strand_, [self = shared_from_this()](beast::error_code error, size_t) {
          if (error) return self->close();
          self->discard_until_closed();
        }));
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    resume_reading_ = false;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    abandon();
    release();
  }

  void abandon() {
    if (auto abandoned = std::exchange(abandoned_, nullptr)) abandoned();
  }

  Strand strand_;
  beast::tcp_stream stream_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  std::optional<bhttp::response<bhttp::empty_body>> stream_head_;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer_;
  std::deque<Piece> pending_;
  std::function<void()> abandoned_;
  std::array<char, 4096> discard_;
  State state_ = State::kReading;
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool head_only_ = false;
  bool refused_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool resume_reading_ = false;
  bool closed_ = false;
  bool held_ = false;  // in loop_->waiting
  std::shared_ptr<const Router> router_;
  std::shared_ptr<const Limits> limits_;
  std::shared_ptr<HttpServer::Counters> counters_;
  std::shared_ptr<Loop> loop_;
};

template <class Step>
bool SessionExchange::run(Step step) {
  if (dispatching != nullptr && dispatching == identity_) {  // its handler answering in place
    step(*dispatching);
    return true;
  }
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(loop_->mu);
    if (!loop_->open) return false;
    session = session_.lock();
    if (!session) return false;
    if (!session->strand().running_in_this_thread()) {
      const Strand strand = session->strand();
      asio::post(strand,
                 [session = std::move(session), step = std::move(step)]() mutable { step(*session); });
      return true;
    }
  }
  // On the strand, so on one of the server's threads: the server has not stopped.
  step(*session);
  return true;
}

void SessionExchange::respond(Response response) {
  run([response = std::move(response)](Session& session) mutable { session.answer(std::move(response)); });
}

void SessionExchange::start_stream(Response head) {
  run([head = std::move(head)](Session& session) mutable { session.start_stream(std::move(head)); });
}

void SessionExchange::write(std::string piece, std::function<void(bool)> sent) {
  auto once = std::make_shared<SentOnce>(std::move(sent));
  run([piece = std::move(piece), once](Session& session) mutable {
    session.write_piece(std::move(piece), std::move(once));
  });
}

void SessionExchange::end() {
  run([](Session& session) { session.end_stream(); });
}

void SessionExchange::on_abandoned(std::function<void()> abandoned) {
  auto shared = std::make_shared<std::function<void()>>(std::move(abandoned));
  if (!run([shared](Session& session) { session.set_abandoned(std::move(*shared)); })) {
    (*shared)();  // the connection is gone already
  }
}

}  // namespace

struct HttpServer::State {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::shared_ptr<Loop> loop = std::make_shared<Loop>();
};

HttpServer::HttpServer(std::string listen, Limits limits, Router router)
    : listen_(std::move(listen)),
      limits_(std::make_shared<const Limits>(limits)),
      router_(std::make_shared<const Router>(std::move(router))) {}

HttpServer::~HttpServer() {
  stop();
}

namespace {

void accept_next(tcp::acceptor& acceptor, asio::io_context& io, std::shared_ptr<const Router> router,
                 std::shared_ptr<const Limits> limits, std::shared_ptr<HttpServer::Counters> counters,
                 std::shared_ptr<Loop> loop) {
  Strand strand = asio::make_strand(io);
  acceptor.async_accept(strand, [&acceptor, &io, strand, router, limits, counters, loop](
                                    beast::error_code error, tcp::socket socket) {
    if (error == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!error) {
      if (counters->connections.fetch_add(1) >= limits->max_connections) {
        --counters->connections;  // over the limit: closed at once, before anything is read
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), strand, router, limits, counters, loop)->read_request();
      }
    }
    accept_next(acceptor, io, router, limits, counters, loop);
  });
}

}  // namespace

int HttpServer::start() {
  const auto [host, port] = split_host_port(listen_);
  if (host.empty()) throw std::runtime_error("[http] listen '" + listen_ + "' is not host:port");
  state_ = std::make_unique<State>();
  try {
    tcp::resolver resolver(state_->io);
    const auto endpoints = resolver.resolve(host, std::to_string(port), tcp::resolver::passive);
    if (endpoints.empty()) throw std::runtime_error("no address");
    const tcp::endpoint endpoint = endpoints.begin()->endpoint();
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    state_.reset();
    throw std::runtime_error("[http] cannot listen on " + listen_ + ": " + e.what());
  }
  const int bound = state_->acceptor.local_endpoint().port();
  accept_next(state_->acceptor, state_->io, router_, limits_, counters_, state_->loop);
  for (size_t i = 0; i < std::max<size_t>(1, limits_->threads); ++i) {
    threads_.emplace_back([this] { state_->io.run(); });
  }
  return bound;
}

void HttpServer::stop() {
  if (!state_) return;
  std::unordered_set<std::shared_ptr<Session>> waiting;
  {
    std::lock_guard lock(state_->loop->mu);
    state_->loop->open = false;
    waiting.swap(state_->loop->waiting);
  }
  asio::post(state_->io, [this] {
    beast::error_code ignored;
    state_->acceptor.close(ignored);
  });
  state_->io.stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  beast::error_code ignored;
  state_->acceptor.close(ignored);  // the posted close may not have run
  waiting.clear();  // their calls learn that the client is gone, while the io_context still exists
  state_.reset();   // drops the sessions still open: before open_connections_ goes
}

}  // namespace gameverse::http
