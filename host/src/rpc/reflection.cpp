#include "rpc/reflection.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "grpc/reflection/v1/reflection.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "plugin/builtin.hpp"

namespace gameverse::rpc {

namespace {

namespace sdk = gameverse::sdk;
namespace gp = google::protobuf;

plugin::PluginManager*& wired_manager() {
  static plugin::PluginManager* manager = nullptr;
  return manager;
}

// What serves at the time of one request. The route table holds the generations, so their pools
// live as long as the answer is being made.
class Serving {
 public:
  explicit Serving(std::shared_ptr<const plugin::RouteTable> routes) : routes_(std::move(routes)) {
    for (const auto& [method, route] : *routes_) plugins_.push_back(route.plugin.get());
    std::sort(plugins_.begin(), plugins_.end(),
              [](const plugin::Plugin* a, const plugin::Plugin* b) { return a->name() < b->name(); });
    plugins_.erase(std::unique(plugins_.begin(), plugins_.end()), plugins_.end());
  }

  std::set<std::string> services() const { return plugin::services_of(*routes_); }

  // The file that declares `symbol`: first in the pool of the plugin serving the service it is
  // (or is inside of), else in any serving plugin's pool.
  const gp::FileDescriptor* file_containing_symbol(const std::string& symbol) const {
    for (const auto& [method, route] : *routes_) {
      const std::string_view service = std::string_view(method).substr(1, method.find('/', 1) - 1);
      if (symbol.size() >= service.size() && symbol.compare(0, service.size(), service) == 0 &&
          (symbol.size() == service.size() || symbol[service.size()] == '.')) {
        if (const auto* file = route.plugin->pool().FindFileContainingSymbol(symbol)) return file;
        break;
      }
    }
    return first_found([&](const gp::DescriptorPool& pool) { return pool.FindFileContainingSymbol(symbol); });
  }

  const gp::FileDescriptor* file_by_name(const std::string& name) const {
    return first_found([&](const gp::DescriptorPool& pool) { return pool.FindFileByName(name); });
  }

  const gp::FileDescriptor* file_containing_extension(const std::string& type, int number) const {
    return first_found([&](const gp::DescriptorPool& pool) -> const gp::FileDescriptor* {
      const gp::Descriptor* message = pool.FindMessageTypeByName(type);
      const gp::FieldDescriptor* extension = message ? pool.FindExtensionByNumber(message, number) : nullptr;
      return extension ? extension->file() : nullptr;
    });
  }

  // The numbers of every extension of `type` in the first pool that has the type; false if none.
  bool extension_numbers(const std::string& type, std::vector<int>& numbers) const {
    for (const plugin::Plugin* serving : plugins_) {
      const gp::Descriptor* message = serving->pool().FindMessageTypeByName(type);
      if (message == nullptr) continue;
      std::vector<const gp::FieldDescriptor*> extensions;
      serving->pool().FindAllExtensions(message, &extensions);
      for (const auto* extension : extensions) numbers.push_back(extension->number());
      std::sort(numbers.begin(), numbers.end());
      return true;
    }
    return false;
  }

 private:
  template <class Find>
  const gp::FileDescriptor* first_found(Find find) const {
    for (const plugin::Plugin* serving : plugins_) {
      if (const auto* file = find(serving->pool())) return file;
    }
    return nullptr;
  }

  std::shared_ptr<const plugin::RouteTable> routes_;
  std::vector<const plugin::Plugin*> plugins_;  // each serving generation once, by name
};

// The open reflection streams, so that shutdown ends them before the drain: a client such as
// Postman keeps its stream open while it shows the host.
class OpenStreams {
 public:
  // Keeps `end` (which finishes the stream) until forget(id); returns the id. Once the host is
  // stopping, ends the stream at once.
  uint64_t add(std::function<void()> end) {
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        enders_.emplace(next_id_, std::move(end));
        return next_id_++;
      }
    }
    end();
    return 0;
  }

  void forget(uint64_t id) {
    std::function<void()> dropped;  // dropped outside the lock: it holds a stream handle
    std::lock_guard lock(mu_);
    if (auto it = enders_.find(id); it != enders_.end()) {
      dropped = std::move(it->second);
      enders_.erase(it);
    }
  }

  void end_all() {
    std::map<uint64_t, std::function<void()>> ending;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      ending.swap(enders_);
    }
    for (auto& [id, end] : ending) end();
  }

 private:
  std::mutex mu_;
  bool stopping_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::function<void()>> enders_;
};

// One reflection stream (v1 or v1alpha: the same messages under two packages).
template <class Request, class Response>
class ReflectionStream final : public sdk::StreamReader<Request> {
 public:
  ReflectionStream(plugin::PluginManager& manager, OpenStreams& open, sdk::ServerStream<Response> out)
      : manager_(manager), open_(open), out_(std::move(out)) {
    id_ = open_.add([out = out_] {
      out.finish({sdk::StatusCode::kUnavailable, "the host is shutting down"});
    });
  }

  void on_message(const Request& request) override {
    Response response;
    response.set_valid_host(request.host());
    *response.mutable_original_request() = request;
    answer(Serving(manager_.routes()), request, response);
    // A client that does not read its answers fills the call's queue: it is ended then.
    if (!out_.write(response)) {
      out_.finish({sdk::StatusCode::kResourceExhausted, "the client does not read the reflection answers"});
      open_.forget(id_);
    }
  }

  void on_half_close() override {
    out_.finish();
    open_.forget(id_);
  }

  void on_cancel() override { open_.forget(id_); }

 private:
  void answer(const Serving& serving, const Request& request, Response& response) {
    switch (request.message_request_case()) {
      case Request::kListServices:
        for (const auto& service : serving.services())
          response.mutable_list_services_response()->add_service()->set_name(service);
        return;
      case Request::kFileByFilename:
        return send_file(serving.file_by_name(request.file_by_filename()),
                         "no file named '" + request.file_by_filename() + "'", response);
      case Request::kFileContainingSymbol:
        return send_file(serving.file_containing_symbol(request.file_containing_symbol()),
                         "no symbol named '" + request.file_containing_symbol() + "'", response);
      case Request::kFileContainingExtension: {
        const auto& asked = request.file_containing_extension();
        return send_file(serving.file_containing_extension(asked.containing_type(), asked.extension_number()),
                         "no extension " + std::to_string(asked.extension_number()) + " of '" +
                             asked.containing_type() + "'",
                         response);
      }
      case Request::kAllExtensionNumbersOfType: {
        std::vector<int> numbers;
        if (!serving.extension_numbers(request.all_extension_numbers_of_type(), numbers)) {
          return fail(sdk::StatusCode::kNotFound,
                      "no message type named '" + request.all_extension_numbers_of_type() + "'", response);
        }
        auto* found = response.mutable_all_extension_numbers_response();
        found->set_base_type_name(request.all_extension_numbers_of_type());
        for (int number : numbers) found->add_extension_number(number);
        return;
      }
      default:
        return fail(sdk::StatusCode::kInvalidArgument,
                    "the request sets none of file_by_filename, file_containing_symbol, "
                    "file_containing_extension, all_extension_numbers_of_type, list_services",
                    response);
    }
  }

  static void fail(sdk::StatusCode code, const std::string& message, Response& response) {
    response.mutable_error_response()->set_error_code(static_cast<int32_t>(code));
    response.mutable_error_response()->set_error_message(message);
  }

  // The file, always, then each of its transitive imports this stream has not had in this form:
  // a reload can change a file under the same name.
  void send_file(const gp::FileDescriptor* file, const std::string& not_found, Response& response) {
    if (file == nullptr) return fail(sdk::StatusCode::kNotFound, not_found, response);
    auto* files = response.mutable_file_descriptor_response();
    std::vector<const gp::FileDescriptor*> pending{file};
    std::set<const gp::FileDescriptor*> visited{file};
    while (!pending.empty()) {
      const gp::FileDescriptor* next = pending.back();
      pending.pop_back();
      gp::FileDescriptorProto proto;
      next->CopyTo(&proto);
      std::string bytes = proto.SerializeAsString();
      const size_t digest = std::hash<std::string>{}(bytes);
      auto [sent, first_time] = sent_.try_emplace(next->name(), digest);
      if (next == file || first_time || sent->second != digest) {
        sent->second = digest;
        files->add_file_descriptor_proto(std::move(bytes));
      }
      for (int i = 0; i < next->dependency_count(); ++i) {
        if (visited.insert(next->dependency(i)).second) pending.push_back(next->dependency(i));
      }
    }
  }

  plugin::PluginManager& manager_;
  OpenStreams& open_;
  sdk::ServerStream<Response> out_;
  uint64_t id_ = 0;
  // File name → hash of the FileDescriptorProto sent; bounded by the files the pools hold.
  std::unordered_map<std::string, size_t> sent_;
};

class ReflectionPlugin final : public sdk::Plugin {
 public:
  explicit ReflectionPlugin(sdk::InitContext&) : manager_(*wired_manager()) {
    listener_ = manager_.subscribe([this](const plugin::Event& event) {
      if (event.kind == plugin::Event::Kind::kStopping) open_.end_all();
    });
  }

  ~ReflectionPlugin() override {
    manager_.unsubscribe(listener_);
    open_.end_all();
  }

  // Open to anonymous callers: tools describe the host before anyone has a token.
  static void describe(sdk::PluginBuilder<ReflectionPlugin>& b) {
    b.service("grpc.reflection.v1.ServerReflection")
        .bidi_stream("ServerReflectionInfo",
                     &ReflectionPlugin::info<grpc::reflection::v1::ServerReflectionRequest,
                                             grpc::reflection::v1::ServerReflectionResponse>,
                     sdk::kPublic);
    b.service("grpc.reflection.v1alpha.ServerReflection")
        .bidi_stream("ServerReflectionInfo",
                     &ReflectionPlugin::info<grpc::reflection::v1alpha::ServerReflectionRequest,
                                             grpc::reflection::v1alpha::ServerReflectionResponse>,
                     sdk::kPublic);
  }

  template <class Request, class Response>
  std::unique_ptr<sdk::StreamReader<Request>> info(sdk::CallContext&, sdk::ServerStream<Response> out) {
    return std::make_unique<ReflectionStream<Request, Response>>(manager_, open_, std::move(out));
  }

 private:
  plugin::PluginManager& manager_;
  OpenStreams open_;
  int listener_ = 0;
};

}  // namespace

plugin::Outcome serve_reflection(plugin::PluginManager& manager) {
  wired_manager() = &manager;
  return plugin::serve_builtin<ReflectionPlugin>(
      manager, kReflectionPluginName, "grpc.reflection.v1 and v1alpha: what the host serves, described",
      "reflection",
      {grpc::reflection::v1::ServerReflectionRequest::descriptor()->file(),
       grpc::reflection::v1alpha::ServerReflectionRequest::descriptor()->file()});
}

}  // namespace gameverse::rpc
