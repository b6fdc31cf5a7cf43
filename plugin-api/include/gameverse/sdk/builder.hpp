// gameverse/sdk/builder.hpp — what a plugin's describe() declares: its services and their methods
// (each with its access policy), config keys with their rules, dependencies and collections.
//
//   static void describe(sdk::PluginBuilder<Echo>& b) {
//     b.service("gameverse.echo.v1.Echo")
//         .unary("Echo", &Echo::echo, sdk::kPublic)
//         .blocking("Save", &Echo::save);  // runs on the host's pool: may use the store
//     b.config_int("max_items", 100, "Most items a call may ask for", sdk::between(1, 10000));
//   }
//
// A mistake here (a method declared twice, a malformed name) refuses the load, and the host logs
// what it was.
#pragma once

#include <gameverse/abi.h>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gameverse/sdk/call.hpp"
#include "gameverse/sdk/detail/abi.hpp"
#include "gameverse/sdk/host.hpp"
#include "gameverse/sdk/status.hpp"

namespace gameverse::sdk {

// Access policies at the host's gate: anyone; any signed-in caller (what a method without a
// policy gets); or callers with a role (sdk::role("moderator")). [plugin.access] can override them.
inline constexpr const char* kPublic = "public";
inline constexpr const char* kAuthenticated = "authenticated";
inline std::string role(std::string_view name) {
  return "role:" + std::string(name);
}

// A rule a config key's value must meet; the host checks it and names the file, line and column
// of a value that breaks it. Combine several: config_int("n", 4, "...", sdk::at_least(1), sdk::at_most(64)).
struct ConfigRule {
  uint32_t rules = 0;  // GV_CONFIG_RULE_*
  int64_t min_int = 0, max_int = 0;
  double min_double = 0, max_double = 0;
  std::vector<std::string> allowed;
};

template <class T>
requires std::is_arithmetic_v<T> ConfigRule at_least(T minimum) {
  ConfigRule rule;
  rule.rules = GV_CONFIG_RULE_MIN;
  rule.min_double = static_cast<double>(minimum);
  rule.min_int = static_cast<int64_t>(std::ceil(static_cast<double>(minimum)));
  return rule;
}

template <class T>
requires std::is_arithmetic_v<T> ConfigRule at_most(T maximum) {
  ConfigRule rule;
  rule.rules = GV_CONFIG_RULE_MAX;
  rule.max_double = static_cast<double>(maximum);
  rule.max_int = static_cast<int64_t>(std::floor(static_cast<double>(maximum)));
  return rule;
}

template <class T>
requires std::is_arithmetic_v<T> ConfigRule between(T minimum, T maximum) {
  ConfigRule rule = at_least(minimum);
  const ConfigRule upper = at_most(maximum);
  rule.rules |= upper.rules;
  rule.max_double = upper.max_double;
  rule.max_int = upper.max_int;
  return rule;
}

inline ConfigRule non_empty() {
  ConfigRule rule;
  rule.rules = GV_CONFIG_RULE_NON_EMPTY;
  return rule;
}

inline ConfigRule one_of(std::initializer_list<const char*> values) {
  ConfigRule rule;
  rule.rules = GV_CONFIG_RULE_ONE_OF;
  for (const char* v : values) rule.allowed.emplace_back(v);
  return rule;
}

namespace detail {

// The plugin's own record in the host (gv_on_init's `self`); with host_api(), what hooks that
// are not handed it (call hooks) reach the host through. One per loaded library.
inline gv_host_plugin*& plugin_self() {
  static gv_host_plugin* self = nullptr;
  return self;
}

template <class P>
struct MethodEntry {
  std::string full_name;
  gv_call_kind kind;
  // Starts the call; returns the state the host keeps for it, or null when the call is done.
  std::function<std::shared_ptr<CallState>(P&, gv_call*, gv_bytes)> start;
  uint32_t flags = 0;
  // Continues a call detached from the previous generation (movable methods only).
  std::function<std::shared_ptr<CallState>(P&, gv_call*, gv_bytes)> adopt;
  std::string access;  // empty: nothing declared, which the host's gate treats as "authenticated"
};

struct ConfigKeyEntry {
  std::string key;
  gv_config_type type;
  bool required;
  std::optional<std::string> default_literal;
  std::string description;
  ConfigRule rule;
};

inline std::string toml_string_literal(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

inline bool is_identifier(std::string_view name, bool dots) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(letter || (digit && i > 0) || (dots && c == '.' && name[i - 1] != '.'))) return false;
  }
  return true;
}

inline Status skipped_work_status(gv_status_code status) {
  switch (status) {
    case GV_STATUS_CANCELLED: return {StatusCode::kCancelled, "the client cancelled the call"};
    case GV_STATUS_DEADLINE_EXCEEDED:
      return {StatusCode::kDeadlineExceeded, "the call's deadline passed before its work could start"};
    default: return {static_cast<StatusCode>(status), "the plugin is shutting down"};
  }
}

}  // namespace detail

template <class P>
class ServiceBuilder;

// What a plugin's describe() fills in.
template <class P>
class PluginBuilder {
 public:
  // A service of the plugin's .proto ("package.Service"); its methods follow, named relative to it.
  ServiceBuilder<P> service(std::string full_name) {
    if (!detail::is_identifier(full_name, true)) {
      throw std::invalid_argument("service name '" + full_name + "' is not of the form package.Service");
    }
    return ServiceBuilder<P>(*this, std::move(full_name));
  }

  template <class... Rules>
  PluginBuilder& config_string(const char* key, std::string_view default_value, const char* description,
                               Rules&&... rules) {
    return config(key, GV_CONFIG_STRING, detail::toml_string_literal(default_value), description,
                  std::forward<Rules>(rules)...);
  }
  template <class... Rules>
  PluginBuilder& config_int(const char* key, int64_t default_value, const char* description,
                            Rules&&... rules) {
    return config(key, GV_CONFIG_INT, std::to_string(default_value), description,
                  std::forward<Rules>(rules)...);
  }
  template <class... Rules>
  PluginBuilder& config_double(const char* key, double default_value, const char* description,
                               Rules&&... rules) {
    char literal[64];
    std::snprintf(literal, sizeof literal, "%.17g", default_value);
    std::string text = literal;
    if (text.find_first_of(".eEn") == std::string::npos) text += ".0";  // a TOML float, not an integer
    return config(key, GV_CONFIG_DOUBLE, text, description, std::forward<Rules>(rules)...);
  }
  PluginBuilder& config_bool(const char* key, bool default_value, const char* description) {
    return config(key, GV_CONFIG_BOOL, default_value ? "true" : "false", description);
  }
  // A key the operator must set; the host refuses the load without it.
  template <class... Rules>
  PluginBuilder& config_required(const char* key, gv_config_type type, const char* description,
                                 Rules&&... rules) {
    add_config_key({key, type, true, std::nullopt, description, merge(std::forward<Rules>(rules)...)});
    return *this;
  }

  // A service ("package.Service") this plugin calls; the host loads its owner first.
  PluginBuilder& depends_on(const char* service) {
    dependencies_.emplace_back(service);
    return *this;
  }

  // A store collection this plugin uses ([a-z0-9_-], at most 64): its own, namespaced by plugin.
  PluginBuilder& collection(const char* name) {
    collections_.emplace_back(name);
    return *this;
  }

  std::vector<detail::MethodEntry<P>> methods_;
  std::vector<detail::ConfigKeyEntry> config_keys_;
  std::vector<std::string> dependencies_;
  std::vector<std::string> collections_;

 private:
  friend class ServiceBuilder<P>;

  void add_method(detail::MethodEntry<P> entry) {
    for (const auto& m : methods_) {
      if (m.full_name == entry.full_name)
        throw std::invalid_argument("method " + entry.full_name + " is declared twice");
    }
    methods_.push_back(std::move(entry));
  }

  void add_config_key(detail::ConfigKeyEntry entry) {
    for (const auto& k : config_keys_) {
      if (k.key == entry.key) throw std::invalid_argument("config key '" + entry.key + "' is declared twice");
    }
    config_keys_.push_back(std::move(entry));
  }

  static void add_rule(ConfigRule& all, const ConfigRule& r) {
    all.rules |= r.rules;
    if (r.rules & GV_CONFIG_RULE_MIN) {
      all.min_int = r.min_int;
      all.min_double = r.min_double;
    }
    if (r.rules & GV_CONFIG_RULE_MAX) {
      all.max_int = r.max_int;
      all.max_double = r.max_double;
    }
    all.allowed.insert(all.allowed.end(), r.allowed.begin(), r.allowed.end());
  }

  template <class... Rules>
  static ConfigRule merge(Rules&&... rules) {
    ConfigRule all;
    (add_rule(all, ConfigRule(std::forward<Rules>(rules))), ...);
    return all;
  }

  template <class... Rules>
  PluginBuilder& config(const char* key, gv_config_type type, std::string literal, const char* description,
                        Rules&&... rules) {
    add_config_key({key, type, false, std::move(literal), description, merge(std::forward<Rules>(rules)...)});
    return *this;
  }
};

// The methods of one service, each named relative to it and declared with its access policy.
template <class P>
class ServiceBuilder {
 public:
  ServiceBuilder(PluginBuilder<P>& plugin, std::string name) : plugin_(plugin), name_(std::move(name)) {}

  // Another service of the same plugin.
  ServiceBuilder service(std::string full_name) { return plugin_.service(std::move(full_name)); }

  // A unary method answered on the thread that delivered it: for handlers that never block.
  template <class Req, class Resp>
  ServiceBuilder& unary(const char* method, Status (P::*fn)(CallContext&, const Req&, Resp&),
                        std::string access = {}) {
    return add(method, GV_CALL_UNARY, std::move(access),
               [fn](P& plugin, gv_call* call, gv_bytes bytes) -> std::shared_ptr<detail::CallState> {
                 Req request;
                 if (!detail::parse(bytes, request)) {
                   detail::finish_call(call, detail::parse_error(request));
                   return nullptr;
                 }
                 Resp response;
                 CallContext context(call);
                 Status status;
                 try {
                   status = (plugin.*fn)(context, request, response);
                 } catch (...) {
                   status = detail::status_of_current_exception();
                 }
                 if (status.is_ok()) {
                   detail::with_serialized(response, [call](const uint8_t* data, size_t size) {
                     return detail::host_api()->call_send(call, data, size);
                   });
                 }
                 detail::finish_call(call, status);
                 return nullptr;
               });
  }

  // A unary method with the same signature, run on the host's pool for blocking work: the
  // handler may use the store, the cache and other services. A call cancelled or past its
  // deadline before its turn is not run; a full queue answers RESOURCE_EXHAUSTED.
  template <class Req, class Resp>
  ServiceBuilder& blocking(const char* method, Status (P::*fn)(CallContext&, const Req&, Resp&),
                           std::string access = {}) {
    return add(method, GV_CALL_UNARY, std::move(access),
               [fn](P& plugin, gv_call* call, gv_bytes bytes) -> std::shared_ptr<detail::CallState> {
                 // One allocation carries the call to the pool and back (what a blocking call costs
                 // beside an inline one is measured: tools/gv bench blocking).
                 struct Job {
                   P* plugin;
                   Status (P::*fn)(CallContext&, const Req&, Resp&);
                   Req request;
                   std::shared_ptr<detail::CallState> state;

                   static void run(void* context, gv_status_code status) {
                     std::unique_ptr<Job> job(static_cast<Job*>(context));
                     detail::CallState& state = *job->state;
                     if (status != GV_STATUS_OK) {
                       state.finish(detail::skipped_work_status(status));
                       return;
                     }
                     Resp response;
                     CallContext call_context(state.handle());
                     Status result;
                     try {
                       result = (job->plugin->*job->fn)(call_context, job->request, response);
                       if (result.is_ok() && !state.send_message(response)) {
                         result = Status(StatusCode::kCancelled, "the call ended before the reply");
                       }
                     } catch (...) {
                       result = detail::status_of_current_exception();
                     }
                     state.finish(result);
                   }
                 };
                 auto job = std::make_unique<Job>(Job{&plugin, fn, Req(), nullptr});
                 if (!detail::parse(bytes, job->request)) {
                   detail::finish_call(call, detail::parse_error(job->request));
                   return nullptr;
                 }
                 job->state = std::make_shared<detail::CallState>(call);
                 std::shared_ptr<detail::CallState> state = job->state;
                 state->give_to_blocking_work();
                 const gv_host_api* api = detail::host_api();
                 if (api->abi_minor < 2) {  // a host without the pool: run it here
                   Job::run(job.release(), GV_STATUS_OK);
                   return state;
                 }
                 detail::MessageBuffer message;
                 const gv_status_code code =
                     api->run_blocking(detail::plugin_self(), call, &Job::run, job.get(), message.buffer());
                 if (code == GV_STATUS_OK) {
                   job.release();  // Job::run owns it now
                 } else {
                   state->finish(Status(static_cast<StatusCode>(code), message.text));
                 }
                 return state;
               });
  }

  // A unary method that answers later, from any thread, through the UnaryResponder.
  template <class Req, class Resp>
  ServiceBuilder& unary_async(const char* method,
                              void (P::*fn)(CallContext&, const Req&, UnaryResponder<Resp>),
                              std::string access = {}) {
    return add(method, GV_CALL_UNARY, std::move(access), request_starter(fn));
  }

  template <class Req, class Resp>
  ServiceBuilder& server_stream(const char* method,
                                void (P::*fn)(CallContext&, const Req&, ServerStream<Resp>),
                                std::string access = {}) {
    return add(method, GV_CALL_SERVER_STREAMING, std::move(access), request_starter(fn));
  }

  // A server stream that moves to the next generation on hot reload: `open` starts it and
  // returns its session; on reload the session's detach() stops it and `resume` of the next
  // generation continues it from what detach() returned.
  template <class Req, class Resp>
  ServiceBuilder& server_stream_movable(const char* method,
                                        std::unique_ptr<StreamSession> (P::*open)(CallContext&, const Req&,
                                                                                  ServerStream<Resp>),
                                        std::unique_ptr<StreamSession> (P::*resume)(std::string_view detached,
                                                                                    ServerStream<Resp>),
                                        std::string access = {}) {
    add(method, GV_CALL_SERVER_STREAMING, std::move(access),
        [open](P& plugin, gv_call* call, gv_bytes bytes) {
          auto state = std::make_shared<detail::CallState>(call);
          Req request;
          if (!detail::parse(bytes, request)) {
            state->finish(detail::parse_error(request));
            return state;
          }
          CallContext context(call);
          attach_session(state, [&] { return (plugin.*open)(context, request, ServerStream<Resp>(state)); });
          return state;
        });
    plugin_.methods_.back().flags = GV_METHOD_MOVABLE;
    plugin_.methods_.back().adopt = [resume](P& plugin, gv_call* call, gv_bytes detached) {
      auto state = std::make_shared<detail::CallState>(call);
      attach_session(state,
                     [&] { return (plugin.*resume)(detail::view(detached), ServerStream<Resp>(state)); });
      return state;
    };
    return *this;
  }

  // Client streaming: the reader gets every request; it writes the one response to the stream.
  template <class Req, class Resp>
  ServiceBuilder& client_stream(const char* method,
                                std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>),
                                std::string access = {}) {
    return add(method, GV_CALL_CLIENT_STREAMING, std::move(access), reader_starter<Req, Resp>(fn));
  }

  template <class Req, class Resp>
  ServiceBuilder& bidi_stream(const char* method,
                              std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>),
                              std::string access = {}) {
    return add(method, GV_CALL_BIDI_STREAMING, std::move(access), reader_starter<Req, Resp>(fn));
  }

  // A bidi stream that moves to the next generation on hot reload: the reader's detach() stops
  // it, and `resume` of the next generation returns the reader that continues it.
  template <class Req, class Resp>
  ServiceBuilder& bidi_stream_movable(
      const char* method, std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>),
      std::unique_ptr<StreamReader<Req>> (P::*resume)(std::string_view detached, ServerStream<Resp>),
      std::string access = {}) {
    add(method, GV_CALL_BIDI_STREAMING, std::move(access), reader_starter<Req, Resp>(fn));
    plugin_.methods_.back().flags = GV_METHOD_MOVABLE;
    plugin_.methods_.back().adopt = [resume](P& plugin, gv_call* call, gv_bytes detached) {
      auto state = std::make_shared<detail::CallState>(call);
      attach_reader(state,
                    [&] { return (plugin.*resume)(detail::view(detached), ServerStream<Resp>(state)); });
      return state;
    };
    return *this;
  }

 private:
  template <class F>
  ServiceBuilder& add(const char* method, gv_call_kind kind, std::string access, F&& start) {
    if (method == nullptr || !detail::is_identifier(method, false)) {
      throw std::invalid_argument("service " + name_ + ": method name '" + (method ? method : "") +
                                  "' is not an identifier (give it relative to the service: \"Echo\")");
    }
    plugin_.add_method(
        {"/" + name_ + "/" + method, kind, std::forward<F>(start), 0, nullptr, std::move(access)});
    return *this;
  }

  // Parses the one request and hands it to the handler with a response handle over the call.
  template <class Req, class Handle>
  static auto request_starter(void (P::*fn)(CallContext&, const Req&, Handle)) {
    return [fn](P& plugin, gv_call* call, gv_bytes bytes) {
      auto state = std::make_shared<detail::CallState>(call);
      Req request;
      if (!detail::parse(bytes, request)) {
        state->finish(detail::parse_error(request));
        return state;
      }
      CallContext context(call);
      start_handler(state, [&] { (plugin.*fn)(context, request, Handle(state)); });
      return state;
    };
  }

  template <class Req, class Resp>
  static auto reader_starter(std::unique_ptr<StreamReader<Req>> (P::*fn)(CallContext&, ServerStream<Resp>)) {
    return [fn](P& plugin, gv_call* call, gv_bytes) {
      auto state = std::make_shared<detail::CallState>(call);
      CallContext context(call);
      attach_reader(state, [&] { return (plugin.*fn)(context, ServerStream<Resp>(state)); });
      return state;
    };
  }

  // Runs the factory and attaches its reader to the call; failures finish the call.
  template <class Factory>
  static void attach_reader(const std::shared_ptr<detail::CallState>& state, Factory&& factory) {
    start_handler(state, [&] {
      auto reader = factory();
      if (!reader) throw Error(StatusCode::kInternal, "the handler returned no stream reader");
      using Request = typename std::remove_reference_t<decltype(*reader)>::RequestType;
      auto sink = std::make_unique<detail::ReaderSink<Request>>(std::move(reader), state);
      detail::InboundSink* raw = sink.get();
      state->inbound_ = std::move(sink);
      state->detacher_ = [raw] { return raw->detach(); };
    });
  }

  // Runs the factory and attaches its session to the call; failures finish the call.
  template <class Factory>
  static void attach_session(const std::shared_ptr<detail::CallState>& state, Factory&& factory) {
    start_handler(state, [&] {
      std::shared_ptr<StreamSession> session = factory();
      if (!session) throw Error(StatusCode::kInternal, "the handler returned no stream session");
      state->session_ = session;
      StreamSession* raw = session.get();
      state->on_cancel([raw] { raw->on_cancel(); });
      state->detacher_ = [raw]() -> std::optional<std::string> { return raw->detach(); };
    });
  }

  // Runs a handler's start. What it throws ends the call with the exception's status, also when
  // it had dropped the stream or responder it was given (CallState::finish_dropped).
  template <class Start>
  static void start_handler(const std::shared_ptr<detail::CallState>& state, Start&& start) {
    state->begin_start();
    std::optional<Status> failure;
    try {
      start();
    } catch (...) {
      failure = detail::status_of_current_exception();
    }
    state->end_start(failure);
  }

  PluginBuilder<P>& plugin_;
  std::string name_;
};

}  // namespace gameverse::sdk
