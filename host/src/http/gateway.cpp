#include "http/gateway.hpp"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>
#include <grpcpp/client_context.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "logging/format.hpp"
#include "logging/request_id.hpp"
#include "platform/byte_buffer.hpp"
#include "platform/metrics.hpp"
#include "platform/service_calls.hpp"
#include "platform/store.hpp"
#include "rpc/call_metrics.hpp"
#include "rpc/forwarding.hpp"
#include "rpc/gate.hpp"

namespace gameverse::http {

namespace gp = google::protobuf;

unsigned http_status_of(int grpc_code) {
  switch (static_cast<grpc::StatusCode>(grpc_code)) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::CANCELLED: return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE: return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED: return 409;
    case grpc::StatusCode::PERMISSION_DENIED: return 403;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::UNIMPLEMENTED: return 501;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    default: return 500;  // UNKNOWN, INTERNAL, DATA_LOSS
  }
}

int64_t parse_grpc_timeout_ms(std::string_view value) {
  // At most 8 digits and a unit (gRPC over HTTP/2, "Timeout").
  if (value.size() < 2 || value.size() > 9) return -1;
  int64_t amount = 0;
  const auto digits = value.substr(0, value.size() - 1);
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), amount);
  if (error != std::errc() || end != digits.data() + digits.size() || amount < 0) return -1;
  switch (value.back()) {
    case 'H': return amount * 3'600'000;
    case 'M': return amount * 60'000;
    case 'S': return amount * 1'000;
    case 'm': return amount;
    case 'u': return std::max<int64_t>(amount / 1'000, amount > 0 ? 1 : 0);
    case 'n': return std::max<int64_t>(amount / 1'000'000, amount > 0 ? 1 : 0);
    default: return -1;
  }
}

namespace {

constexpr std::string_view kTypeUrlPrefix = "type.googleapis.com";
// A stream's grpc-timeout beyond this (about a year) is taken as this: no overflow in deadlines.
constexpr int64_t kMaxStreamTimeoutMs = int64_t{365} * 24 * 3'600'000;

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string json_error(int code, std::string_view message) {
  spdlog::memory_buf_t text;
  logging::append_json_string_contents(message, text);
  return "{\"code\":" + std::to_string(code) + ",\"status\":\"" + platform::status_code_name(code) +
         "\",\"message\":\"" + std::string(text.data(), text.size()) + "\"}";
}

std::string base64(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

// gRPC-Web text bodies may be several padded base64 pieces one after the other.
std::optional<std::string> unbase64(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');  // decoded in place: linear in the body
  size_t written = 0;
  while (!text.empty()) {
    size_t size = 0;
    const char* end = nullptr;
    if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data() + written), out.size() - written,
                          text.data(), text.size(), " \r\n\t", &size, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end == text.data()) {
      return std::nullopt;
    }
    written += size;
    text.remove_prefix(static_cast<size_t>(end - text.data()));
  }
  out.resize(written);
  return out;
}

// A gRPC message frame: flag, big-endian length, message.
std::string frame(uint8_t flag, std::string_view payload) {
  std::string out(5 + payload.size(), '\0');
  out[0] = static_cast<char>(flag);
  const auto size = static_cast<uint32_t>(payload.size());
  out[1] = static_cast<char>(size >> 24);
  out[2] = static_cast<char>(size >> 16);
  out[3] = static_cast<char>(size >> 8);
  out[4] = static_cast<char>(size);
  std::copy(payload.begin(), payload.end(), out.begin() + 5);
  return out;
}

// grpc-message is percent-encoded (gRPC over HTTP/2, "Status-Message").
std::string percent_encode(std::string_view text) {
  std::string out;
  for (const unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::string trailer_frame(const grpc::Status& status) {
  std::string block = "grpc-status:" + std::to_string(status.error_code()) + "\r\n";
  if (!status.ok()) block += "grpc-message:" + percent_encode(status.error_message()) + "\r\n";
  return frame(0x80, block);
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// A refusal that HTTP itself names (405, 403 for an origin, 415): a JSON body with the gRPC code
// that comes closest, whatever the protocol asked for.
Response json_refusal(unsigned http_status, grpc::StatusCode code, std::string_view message,
                      Headers headers) {
  return {http_status, "application/json", json_error(code, message) + "\n", std::move(headers)};
}

grpc::ByteBuffer to_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Request headers that are HTTP's own, the gateway's, or gRPC's reserved ones: never forwarded as
// call metadata.
bool forwarded_as_metadata(std::string_view name) {
  static const std::array<std::string_view, 24> kDropped = {"host",
                                                            "connection",
                                                            "keep-alive",
                                                            "proxy-connection",
                                                            "proxy-authorization",
                                                            "te",
                                                            "trailer",
                                                            "transfer-encoding",
                                                            "upgrade",
                                                            "content-length",
                                                            "content-type",
                                                            "accept",
                                                            "accept-encoding",
                                                            "accept-language",
                                                            "user-agent",
                                                            "origin",
                                                            "referer",
                                                            "cookie",
                                                            "x-grpc-web",
                                                            "x-user-agent",
                                                            "cache-control",
                                                            "pragma",
                                                            "expect",
                                                            "dnt"};
  if (name.empty() || name.size() > 64) return false;
  const std::string key = lower(name);
  if (std::find(kDropped.begin(), kDropped.end(), key) != kDropped.end()) return false;
  if (key.rfind("grpc-", 0) == 0 || key.rfind("gameverse-", 0) == 0 || key.rfind("sec-", 0) == 0 ||
      key.rfind("access-control-", 0) == 0 || key.rfind("connect-", 0) == 0) {
    return false;
  }
  // Binary metadata would need decoding; a gRPC metadata key is [0-9a-z-_.].
  if (key.size() > 4 && key.compare(key.size() - 4, 4, "-bin") == 0) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

bool printable(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

}  // namespace

// What the gateway shares with its calls: the stub, the routes, the options, and one transcoder
// per plugin generation.
struct Gateway::Core {
  // A generation's JSON mapping: its pool (kept while calls use it) and a resolver over it.
  struct Transcoder {
    std::shared_ptr<const gp::DescriptorPool> pool;
    std::unique_ptr<gp::util::TypeResolver> resolver;
  };

  RouteSource routes;
  grpc::GenericStub stub;
  GatewayOptions options;
  DirectCalls direct;
  std::atomic<size_t> calls{0};    // in progress: unary and streams
  std::atomic<size_t> streams{0};  // in progress
  std::atomic<bool> stopping{false};
  std::mutex transcoders_mu;
  std::unordered_map<const plugin::Plugin*,
                     std::pair<std::weak_ptr<plugin::Plugin>, std::shared_ptr<Transcoder>>>
      transcoders;

  Core(RouteSource source, std::shared_ptr<grpc::Channel> channel, GatewayOptions gateway_options,
       DirectCalls direct_calls)
      : routes(std::move(source)),
        stub(std::move(channel)),
        options(std::move(gateway_options)),
        direct(direct_calls) {}

  // A place for one more call (and stream), held until the returned token is dropped; null when
  // the limits are reached or the host is stopping.
  static std::shared_ptr<void> admit(const std::shared_ptr<Core>& core, bool stream) {
    if (core->stopping.load()) return nullptr;
    if (core->calls.fetch_add(1) >= core->options.max_calls) {
      --core->calls;
      return nullptr;
    }
    if (stream && core->streams.fetch_add(1) >= core->options.max_streams) {
      --core->streams;
      --core->calls;
      return nullptr;
    }
    return std::shared_ptr<void>(core.get(), [core, stream](Core*) {
      if (stream) --core->streams;
      --core->calls;
    });
  }

  std::shared_ptr<Transcoder> transcoder_of(const std::shared_ptr<plugin::Plugin>& plugin) {
    std::lock_guard lock(transcoders_mu);
    auto it = transcoders.find(plugin.get());
    if (it != transcoders.end() && !it->second.first.expired()) return it->second.second;
    // A new generation: forget those that retired.
    std::erase_if(transcoders, [](const auto& entry) { return entry.second.first.expired(); });
    auto transcoder = std::make_shared<Transcoder>();
    transcoder->pool = plugin->shared_pool();
    transcoder->resolver.reset(
        gp::util::NewTypeResolverForDescriptorPool(std::string(kTypeUrlPrefix), transcoder->pool.get()));
    transcoders[plugin.get()] = {plugin, transcoder};
    return transcoder;
  }

  // CORS: the value for Access-Control-Allow-Origin, or empty when the origin may not call.
  std::string allowed_origin(std::string_view origin) const {
    if (origin.empty()) return "";
    for (const auto& allowed : options.cors_origins) {
      if (allowed == "*") return "*";
      if (allowed == origin) return std::string(origin);
    }
    return "";
  }
};

namespace {

enum class Protocol { kJson, kGrpcWeb, kGrpcWebText };

const char* grpc_web_type(Protocol protocol) {
  return protocol == Protocol::kGrpcWebText ? "application/grpc-web-text+proto"
                                            : "application/grpc-web+proto";
}

// A call's failure as its protocol answers it: an HTTP status and a JSON body, or (gRPC-Web) 200
// with the status in trailers.
Response error_answer(Protocol protocol, const grpc::Status& status, Headers headers) {
  if (protocol == Protocol::kJson) {
    return json_refusal(http_status_of(status.error_code()), status.error_code(), status.error_message(),
                        std::move(headers));
  }
  const std::string trailers = trailer_frame(status);
  return {200, grpc_web_type(protocol), protocol == Protocol::kGrpcWeb ? trailers : base64(trailers),
          std::move(headers)};
}

// What a call's answer looks like in its protocol: the head, each message, the end.
class Encoder {
 public:
  Encoder(Protocol protocol, bool streaming, std::shared_ptr<Gateway::Core::Transcoder> transcoder,
          const gp::MethodDescriptor* descriptor, Headers headers)
      : protocol_(protocol),
        streaming_(streaming),
        transcoder_(std::move(transcoder)),
        method_(descriptor->full_name()),
        response_type_url_(std::string(kTypeUrlPrefix) + "/" + descriptor->output_type()->full_name()),
        headers_(std::move(headers)) {}

  Response head(unsigned status) const {
    Response response;
    response.status = status;
    switch (protocol_) {
      case Protocol::kJson:
        response.content_type = streaming_ ? "application/x-ndjson" : "application/json";
        break;
      case Protocol::kGrpcWeb:
      case Protocol::kGrpcWebText: response.content_type = grpc_web_type(protocol_); break;
    }
    response.headers = headers_;
    return response;
  }

  // A reply as one piece of the answer: a JSON object (one NDJSON line in a stream) or a gRPC-Web
  // frame. False when the reply does not convert to JSON (then the call is INTERNAL).
  bool message(std::string_view reply, std::string& piece) {
    if (protocol_ != Protocol::kJson) {
      piece = frame(0, reply);
      if (protocol_ == Protocol::kGrpcWebText) piece = base64(piece);
      return true;
    }
    std::string json;
    const auto converted =
        gp::util::BinaryToJsonString(transcoder_->resolver.get(), response_type_url_, std::string(reply),
                                     &json, gp::util::JsonPrintOptions());
    if (!converted.ok()) {
      spdlog::error("http gateway: the reply of {} does not convert to JSON: {}", method_,
                    converted.ToString());
      failed_ = true;
      return false;
    }
    piece = streaming_ ? "{\"result\":" + json + "}\n" : std::move(json);
    return true;
  }

  // What ends a stream that already sent messages: the trailers, or an error line.
  std::string end_piece(const grpc::Status& given) const {
    const grpc::Status status = effective(given);
    switch (protocol_) {
      case Protocol::kJson:
        return status.ok() ? ""
                           : "{\"error\":" + json_error(status.error_code(), status.error_message()) + "}\n";
      case Protocol::kGrpcWeb: return trailer_frame(status);
      case Protocol::kGrpcWebText: return base64(trailer_frame(status));
    }
    return "";
  }

  // True once a reply did not convert to JSON: the call then counts as INTERNAL.
  bool failed() const { return failed_; }

  // The whole answer at once: a unary call (`reply` when it succeeded), or a stream that ended
  // before its first message.
  Response whole(const grpc::Status& given, std::string_view reply) {
    grpc::Status status = effective(given);
    std::string body;
    if (status.ok() && !streaming_ && protocol_ == Protocol::kJson && !message(reply, body)) {
      status = effective(status);
    }
    if (protocol_ == Protocol::kJson && !status.ok()) return error_answer(protocol_, status, headers_);
    Response response = head(200);
    if (protocol_ == Protocol::kJson) {
      response.body = std::move(body);
      return response;
    }
    if (status.ok() && !streaming_) body = frame(0, reply);
    body += trailer_frame(status);
    response.body = protocol_ == Protocol::kGrpcWebText ? base64(body) : std::move(body);
    return response;
  }

 private:
  grpc::Status effective(const grpc::Status& status) const {
    if (failed_) return {grpc::StatusCode::INTERNAL, "the reply could not be converted to JSON"};
    return status;
  }

  Protocol protocol_;
  bool streaming_;
  std::shared_ptr<Gateway::Core::Transcoder> transcoder_;
  std::string method_;
  std::string response_type_url_;
  Headers headers_;
  bool failed_ = false;
};

// A server stream through the gateway: a client of the host's own gRPC server on its in-process
// channel, so that the stream moves across reloads like any other. Started on the HTTP thread,
// answered from gRPC's reactions, one message at a time as the client reads them.
class StreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                         public std::enable_shared_from_this<StreamCall> {
 public:
  StreamCall(std::shared_ptr<Gateway::Core> core, std::shared_ptr<Exchange> exchange, std::string method,
             Encoder encoder, std::shared_ptr<void> admission)
      : core_(std::move(core)),
        exchange_(std::move(exchange)),
        method_(std::move(method)),
        encoder_(std::move(encoder)),
        admission_(std::move(admission)) {}

  grpc::ClientContext& context() { return context_; }

  void start(std::string request) {
    request_ = to_buffer(request);
    // The client leaving cancels the call.
    exchange_->on_abandoned([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->context_.TryCancel();
    });
    self_ = shared_from_this();  // until OnDone
    core_->stub.PrepareBidiStreamingCall(&context_, method_, grpc::StubOptions(), this);
    AddHold();  // OnDone waits until every message was read and sent on
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&reply_);
    StartCall();
  }

  // Reactions (gRPC's threads).
  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override {
    if (!ok) return RemoveHold();
    std::string piece;
    if (!encoder_.message(platform::to_string(reply_), piece)) {
      context_.TryCancel();
      return RemoveHold();
    }
    if (!stream_started_) {
      stream_started_ = true;
      exchange_->start_stream(encoder_.head(200));
    }
    exchange_->write(std::move(piece), [weak = weak_from_this()](bool sent) {
      auto self = weak.lock();
      if (!self) return;
      if (!sent) {
        self->context_.TryCancel();
        return self->RemoveHold();
      }
      self->StartRead(&self->reply_);
    });
  }
  void OnDone(const grpc::Status& status) override {
    if (!stream_started_) {
      exchange_->respond(encoder_.whole(status, {}));
    } else {
      std::string last = encoder_.end_piece(status);
      if (!last.empty()) exchange_->write(std::move(last), nullptr);
      exchange_->end();
    }
    admission_.reset();
    self_.reset();  // the last reference but the exchange's weak ones
  }

 private:
  std::shared_ptr<Gateway::Core> core_;
  std::shared_ptr<Exchange> exchange_;
  std::string method_;
  Encoder encoder_;
  std::shared_ptr<void> admission_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer reply_;
  std::shared_ptr<StreamCall> self_;
  bool stream_started_ = false;
};

// The gate's caller as the plugin sees it; null (anonymous) leaves the origin as it is.
void adopt(platform::CallOrigin& origin, const rpc::Caller* caller) {
  if (caller == nullptr) return;
  origin.user_id = caller->user_id;
  origin.session_id = caller->session_id;
  origin.roles = caller->roles;
}

// A unary call: straight to the plugin through the host's in-process call path, past the gate and
// counted in the per-method metrics as on the gRPC port, with no gRPC in between.
void call_unary(const std::shared_ptr<Gateway::Core>& core, const std::shared_ptr<Exchange>& exchange,
                const plugin::Route& route, std::string method, std::string_view authorization,
                platform::CallOrigin origin, std::string request, std::shared_ptr<Encoder> encoder,
                std::shared_ptr<void> admission) {
  rpc::CallMetrics::Method* metrics =
      core->direct.metrics != nullptr ? core->direct.metrics->method(method) : nullptr;
  const auto started = std::chrono::steady_clock::now();
  auto finish = [exchange, encoder, metrics, started](const grpc::Status& status, std::string_view reply) {
    Response response = encoder->whole(status, reply);
    if (metrics != nullptr) {
      metrics->end(encoder->failed() ? grpc::StatusCode::INTERNAL : status.error_code(),
                   std::chrono::steady_clock::now() - started);
    }
    exchange->respond(std::move(response));
  };
  if (metrics != nullptr) metrics->start();
  rpc::Gate* gate = core->direct.gate;
  if (gate != nullptr && route.access.kind != config::AccessPolicy::Kind::kPublic) {
    const rpc::Gate::Decision decision = gate->check(method, route.access, authorization);
    if (decision.refusal) return finish(*decision.refusal, {});
    adopt(origin, decision.caller.get());
  } else if (gate != nullptr && !authorization.empty()) {
    // A public method's caller is worked out only if the plugin asks, as on the gRPC port:
    // verifying a token costs more than the call.
    origin.identify = [gate, method, access = route.access,
                       token = std::string(authorization)](platform::CallOrigin& caller) {
      adopt(caller, gate->check(method, access, token).caller.get());
    };
  }
  // The admission goes with the call itself, not its answer: a call that ended early for its
  // client (deadline, disconnect) still counts while its plugin works on it.
  auto cancel = platform::call_unary_for_client(
      *core->direct.platform, std::move(origin), std::move(method), std::move(request),
      [finish = std::move(finish), admission = std::move(admission)](
          gv_status_code code, std::string_view message, std::string_view reply) {
        finish(grpc::Status(static_cast<grpc::StatusCode>(code), std::string(message)), reply);
      });
  exchange->on_abandoned(std::move(cancel));
}

// The media type of a Content-Type value: lower-case, without parameters.
std::string media_type(std::string_view content_type) {
  std::string type = lower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  return type;
}

// A path a method can have: "/<package.Service>/<Method>".
bool method_shaped(std::string_view path) {
  if (path.size() < 4 || path.front() != '/') return false;
  const size_t slash = path.find('/', 1);
  if (slash == std::string_view::npos || slash + 1 == path.size()) return false;
  const std::string_view service = path.substr(1, slash - 1);
  return service.find('.') != std::string_view::npos && path.find('/', slash + 1) == std::string_view::npos;
}

// The request headers a preflight may allow: those asked for that are valid header names.
std::string allowed_request_headers(std::string_view asked) {
  std::string out = "authorization, content-type, grpc-timeout, x-grpc-web, x-user-agent, x-request-id";
  while (!asked.empty()) {
    const size_t comma = asked.find(',');
    std::string name = lower(asked.substr(0, comma));
    asked = comma == std::string_view::npos ? std::string_view() : asked.substr(comma + 1);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    if (forwarded_as_metadata(name) && out.find(name) == std::string::npos) out += ", " + name;
  }
  return out;
}

void handle(const std::shared_ptr<Gateway::Core>& core, const Request& request,
            const std::shared_ptr<Exchange>& exchange) {
  if (!method_shaped(request.path))
    return exchange->respond({404, "text/plain; charset=utf-8", "not found\n", {}});
  Headers cors;
  const std::string_view origin = request.header("origin");
  const std::string allowed_origin = core->allowed_origin(origin);
  if (!allowed_origin.empty()) {
    cors.emplace_back("Access-Control-Allow-Origin", allowed_origin);
    cors.emplace_back("Access-Control-Expose-Headers", "grpc-status, grpc-message, x-request-id");
  }
  if (!core->options.cors_origins.empty()) cors.emplace_back("Vary", "Origin");

  if (request.method == "OPTIONS") {
    // A browser's preflight: allowed origins learn what they may send.
    if (allowed_origin.empty()) {
      return exchange->respond(
          {403, "text/plain; charset=utf-8", "this origin may not call the gateway\n", cors});
    }
    cors.emplace_back("Access-Control-Allow-Methods", "POST, OPTIONS");
    cors.emplace_back("Access-Control-Allow-Headers",
                      allowed_request_headers(request.header("access-control-request-headers")));
    cors.emplace_back("Access-Control-Max-Age", "600");
    return exchange->respond({204, "", "", cors});
  }

  const std::string type = media_type(request.header("content-type"));
  Protocol protocol = Protocol::kJson;
  if (type == "application/grpc-web-text" || type == "application/grpc-web-text+proto") {
    protocol = Protocol::kGrpcWebText;
  } else if (type == "application/grpc-web" || type == "application/grpc-web+proto") {
    protocol = Protocol::kGrpcWeb;
  }
  // Refusals before any call: JSON callers get an HTTP status and a JSON body, gRPC-Web callers
  // a status in trailers, as their clients expect.
  auto refuse = [&](grpc::StatusCode code, const std::string& message, Headers more_headers = {}) {
    Headers headers = cors;
    headers.insert(headers.end(), more_headers.begin(), more_headers.end());
    if (const auto id = request.header("x-request-id"); logging::is_sane_request_id(id)) {
      headers.emplace_back("X-Request-Id", std::string(id));
    }
    exchange->respond(error_answer(protocol, {code, message}, std::move(headers)));
  };

  if (request.method != "POST") {
    cors.emplace_back("Allow", "POST, OPTIONS");
    return exchange->respond(
        json_refusal(405, grpc::StatusCode::UNIMPLEMENTED, "call methods with POST", cors));
  }
  // A page from an origin not allowed never gets a call made: browsers send simple requests
  // (no preflight) and only hide the answer, which is too late for a call that changes something.
  if (!origin.empty() && allowed_origin.empty()) {
    return exchange->respond(json_refusal(
        403, grpc::StatusCode::PERMISSION_DENIED,
        "the origin " + std::string(origin) + " may not call the gateway; see [http] cors_origins", cors));
  }
  if (protocol == Protocol::kJson && type != "application/json") {
    return exchange->respond(
        json_refusal(415, grpc::StatusCode::INVALID_ARGUMENT,
                     "content-type '" + std::string(request.header("content-type")) +
                         "' is not application/json, application/grpc-web+proto or application/grpc-web-text",
                     cors));
  }
  if (const auto encoding = lower(request.header("content-encoding"));
      !encoding.empty() && encoding != "identity") {
    return exchange->respond(json_refusal(415, grpc::StatusCode::INVALID_ARGUMENT,
                                          "content-encoding '" + encoding + "' is not accepted", cors));
  }

  const std::string method(request.path);
  const auto routes = core->routes();
  const auto route = routes ? routes->find(method) : plugin::RouteTable::const_iterator{};
  if (!routes || route == routes->end()) {
    return refuse(grpc::StatusCode::UNIMPLEMENTED,
                  "method " + method + " is not served by any loaded plugin");
  }
  const gv_call_kind kind = route->second.kind;
  if (kind != GV_CALL_UNARY && kind != GV_CALL_SERVER_STREAMING) {
    return refuse(grpc::StatusCode::UNIMPLEMENTED,
                  "method " + method + " streams requests, which HTTP/1.1 cannot carry; call it over gRPC");
  }
  const auto& plugin = route->second.plugin;
  const gp::MethodDescriptor* descriptor = plugin->methods()[route->second.method_index].descriptor;

  // The request message, in the protobuf wire format.
  std::string message;
  std::shared_ptr<Gateway::Core::Transcoder> transcoder;
  if (protocol == Protocol::kJson) {
    transcoder = core->transcoder_of(plugin);
    gp::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    const std::string_view body = request.body.empty() ? std::string_view("{}") : request.body;
    const auto parsed = gp::util::JsonToBinaryString(
        transcoder->resolver.get(), std::string(kTypeUrlPrefix) + "/" + descriptor->input_type()->full_name(),
        gp::StringPiece(body.data(), body.size()), &message, options);
    if (!parsed.ok()) {
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, "the request body is not a " +
                                                            descriptor->input_type()->full_name() +
                                                            " in JSON: " + std::string(parsed.message()));
    }
  } else {
    std::string decoded;
    std::string_view body = request.body;
    if (protocol == Protocol::kGrpcWebText) {
      auto bytes = unbase64(body);
      if (!bytes) return refuse(grpc::StatusCode::INVALID_ARGUMENT, "the request body is not base64");
      decoded = std::move(*bytes);
      body = decoded;
    }
    // Exactly one uncompressed message frame.
    if (body.size() < 5)
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, "the request holds no message frame");
    const auto flag = static_cast<uint8_t>(body[0]);
    const uint32_t size =
        (uint32_t{static_cast<uint8_t>(body[1])} << 24) | (uint32_t{static_cast<uint8_t>(body[2])} << 16) |
        (uint32_t{static_cast<uint8_t>(body[3])} << 8) | uint32_t{static_cast<uint8_t>(body[4])};
    if (flag != 0) {
      return refuse(flag == 1 ? grpc::StatusCode::UNIMPLEMENTED : grpc::StatusCode::INVALID_ARGUMENT,
                    flag == 1 ? "compressed messages are not accepted" : "the first frame is not a message");
    }
    if (body.size() - 5 != size) {
      return refuse(grpc::StatusCode::INVALID_ARGUMENT,
                    "the request must hold exactly one message frame of the length its header gives");
    }
    message.assign(body.substr(5));
  }

  // The deadline: the client's grpc-timeout, for a unary call never past gateway_timeout_ms.
  int64_t timeout_ms = kind == GV_CALL_UNARY ? core->options.unary_timeout.count() : -1;
  if (const auto given = request.header("grpc-timeout"); !given.empty()) {
    const int64_t asked = parse_grpc_timeout_ms(given);
    if (asked < 0) return refuse(grpc::StatusCode::INVALID_ARGUMENT, "grpc-timeout is malformed");
    timeout_ms = timeout_ms < 0 ? std::min<int64_t>(asked, kMaxStreamTimeoutMs) : std::min(asked, timeout_ms);
  }
  const bool streaming = kind == GV_CALL_SERVER_STREAMING;
  auto admission = Gateway::Core::admit(core, streaming);
  if (!admission) {
    return refuse(grpc::StatusCode::UNAVAILABLE,
                  core->stopping ? "the host is shutting down"
                  : streaming    ? "too many streams open over HTTP; try again shortly, or use gRPC"
                                 : "too many calls in progress over HTTP; try again shortly",
                  {{"Retry-After", "1"}});
  }
  // The client's own request id when it is sane, else a new one: in the answer, the plugin's
  // context and every log line about the call.
  const std::string_view given_id = request.header("x-request-id");
  std::string request_id = logging::is_sane_request_id(given_id)
                               ? std::string(given_id)
                               : std::string(logging::GeneratedRequestId::make().view());
  cors.emplace_back("X-Request-Id", request_id);
  Encoder encoder(protocol, streaming, std::move(transcoder), descriptor, std::move(cors));

  std::vector<std::pair<std::string, std::string>> metadata;
  for (const auto& [name, value] : request.headers) {
    if (!forwarded_as_metadata(name) || !printable(value)) continue;
    std::string key = lower(name);
    if (key != logging::kRequestIdKey) metadata.emplace_back(std::move(key), std::string(value));
  }
  metadata.emplace_back(rpc::kViaGatewayKey, "http");

  if (!streaming) {
    platform::CallOrigin origin;
    origin.peer = exchange->peer();
    origin.metadata = std::move(metadata);
    origin.request_id = std::move(request_id);
    origin.deadline_unix_ms = platform::now_unix_ms() + timeout_ms;
    return call_unary(core, exchange, route->second, method, request.header("authorization"),
                      std::move(origin), std::move(message), std::make_shared<Encoder>(std::move(encoder)),
                      std::move(admission));
  }
  auto call = std::make_shared<StreamCall>(core, exchange, method, std::move(encoder), std::move(admission));
  grpc::ClientContext& context = call->context();
  if (timeout_ms >= 0)
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  context.AddMetadata(std::string(logging::kRequestIdKey), request_id);
  context.AddMetadata(rpc::kForwardedPeerKey, exchange->peer());
  context.AddMetadata(rpc::kForwardingKeyKey, core->options.forwarding_key);
  call->start(std::move(message));
}

}  // namespace

Gateway::Gateway(RouteSource routes, std::shared_ptr<grpc::Channel> channel, GatewayOptions options,
                 DirectCalls direct)
    : core_(std::make_shared<Core>(std::move(routes), std::move(channel), std::move(options), direct)) {}

Gateway::~Gateway() = default;

bool Gateway::stop_and_wait(std::chrono::steady_clock::time_point deadline) {
  core_->stopping = true;
  // Streams run through the gRPC server, whose shutdown ends them; unary calls are the gateway's.
  while (core_->calls.load() > core_->streams.load()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void Gateway::serve(Router& router) {
  router.set_fallback([core = core_](const Request& request, std::shared_ptr<Exchange> exchange) {
    handle(core, request, exchange);
  });
}

}  // namespace gameverse::http
