// gameverse.auth.v1.Auth: maps the protobuf API onto the auth domain. Calls that hash a password
// (Argon2id: tens of milliseconds and megabytes by design) run on the plugin's own workers, never
// on the host's completion threads.
#include <gameverse/sdk/plugin.hpp>

#include <condition_variable>
#include <deque>
#include <sstream>
#include <thread>

#include "domain/auth_service.hpp"
#include "gameverse/auth/v1/auth.pb.h"
#include "infrastructure/store_repositories.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::auth::v1;
using gameverse::auth::AuthError;
using gameverse::auth::AuthService;
using gameverse::auth::TokenClaims;

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

sdk::Status status_of(const AuthError& e) {
  switch (e.kind()) {
    case AuthError::Kind::kInvalidArgument: return {sdk::StatusCode::kInvalidArgument, e.what()};
    case AuthError::Kind::kAlreadyExists: return {sdk::StatusCode::kAlreadyExists, e.what()};
    case AuthError::Kind::kNotFound: return {sdk::StatusCode::kNotFound, e.what()};
    case AuthError::Kind::kUnauthenticated: return {sdk::StatusCode::kUnauthenticated, e.what()};
    case AuthError::Kind::kPermissionDenied: return {sdk::StatusCode::kPermissionDenied, e.what()};
    case AuthError::Kind::kLocked: return {sdk::StatusCode::kResourceExhausted, e.what()};
  }
  return {sdk::StatusCode::kInternal, e.what()};
}

// A few threads for the password-hashing calls; joined when the generation shuts down.
class Workers {
 public:
  explicit Workers(size_t count) {
    for (size_t i = 0; i < count; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Workers() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    wake_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, with nothing left to answer
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

gameverse::auth::AuthSettings settings_from(const sdk::Host& host) {
  gameverse::auth::AuthSettings s;
  s.access_ttl = std::chrono::seconds(host.config_int("access_token_ttl_s"));
  s.refresh_ttl = std::chrono::hours(host.config_int("refresh_token_ttl_h"));
  s.key_rotation = std::chrono::hours(host.config_int("key_rotation_h"));
  s.hasher.opslimit = static_cast<uint64_t>(host.config_int("argon2_opslimit"));
  s.hasher.memlimit = static_cast<size_t>(host.config_int("argon2_memlimit_kib")) * 1024;
  s.max_failures_per_account = host.config_int("max_failed_logins_per_account");
  s.max_failures_per_address = host.config_int("max_failed_logins_per_address");
  s.failure_window = std::chrono::seconds(host.config_int("failed_login_window_s"));
  s.lockout = std::chrono::seconds(host.config_int("lockout_s"));
  s.signing_key_seed = host.config_string("signing_key");
  s.bootstrap_admins = split_list(host.config_string("bootstrap_admins"));
  if (s.access_ttl.count() <= 0 || s.refresh_ttl.count() <= 0 || s.key_rotation.count() <= 0) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument,
                     "token lifetimes and the key rotation must be positive");
  }
  if (s.hasher.opslimit < 1 || s.hasher.memlimit < 8 * 1024) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument, "argon2_opslimit >= 1 and argon2_memlimit_kib >= 8");
  }
  return s;
}

void fill(pb::Account& out, const gameverse::auth::Account& a) {
  out.set_id(a.id);
  out.set_username(a.username);
  for (const auto& r : a.roles) out.add_roles(r);
  for (const auto& d : a.device_ids) out.add_device_ids(d);
  out.set_created_unix_ms(a.created_unix_ms);
}

void fill(pb::Session& out, const gameverse::auth::IssuedSession& s) {
  out.set_access_token(s.access_token);
  out.set_access_expires_unix_ms(s.access_expires_unix_ms);
  out.set_refresh_token(s.refresh_token);
  out.set_refresh_expires_unix_ms(s.refresh_expires_unix_ms);
  fill(*out.mutable_account(), s.account);
}

// "ipv4:1.2.3.4:5678" → "1.2.3.4"; "ipv6:[::1]:5678" → "[::1]".
std::string client_address(std::string_view peer) {
  const size_t colon = peer.find(':');
  const size_t port = peer.rfind(':');
  if (colon == std::string_view::npos || port == colon) return std::string(peer);
  return std::string(peer.substr(colon + 1, port - colon - 1));
}

std::string bearer_token(const sdk::CallContext& context) {
  for (std::string_view value : context.metadata("authorization")) {
    if (value.rfind("Bearer ", 0) == 0) return std::string(value.substr(7));
  }
  return {};
}

class AuthPlugin final : public sdk::Plugin {
 public:
  explicit AuthPlugin(sdk::InitContext& init)
      : accounts_(init.host.store()),
        sessions_(init.host.store()),
        keys_(init.host.store()),
        counters_(init.host.cache()),
        service_(settings_from(init.host), accounts_, sessions_, keys_, counters_, now_unix_ms),
        workers_(static_cast<size_t>(init.host.config_int("hash_workers"))) {
    service_.verification_keys();  // the first signing key exists (or is made) before serving
  }

  static void describe(sdk::PluginBuilder<AuthPlugin>& b) {
    b.collection("accounts")
        .collection("usernames")
        .collection("devices")
        .collection("sessions")
        .collection("refresh")
        .collection("keys");
    b.config_int("access_token_ttl_s", 900, "Lifetime of an access token (JWT), in seconds")
        .config_int("refresh_token_ttl_h", 24 * 30, "How long a session can be refreshed, in hours")
        .config_int("key_rotation_h", 24 * 7,
                    "A new signing key this often, in hours; old keys verify until their tokens expire")
        .config_string(
            "signing_key", "",
            "Base64 Ed25519 seed (openssl rand -base64 32); empty: generated and kept in the store")
        .config_int("argon2_opslimit", 3, "Argon2id passes")
        .config_int("argon2_memlimit_kib", 64 * 1024, "Argon2id memory, in KiB")
        .config_int("hash_workers", 2, "Threads that hash passwords")
        .config_int("max_failed_logins_per_account", 5, "Failed logins in the window that lock an account")
        .config_int("max_failed_logins_per_address", 20,
                    "Failed logins in the window that lock a client address")
        .config_int("failed_login_window_s", 900, "The window failed logins are counted in, in seconds")
        .config_int("lockout_s", 900, "How long a lock lasts, in seconds")
        .config_string("bootstrap_admins", "",
                       "Comma-separated usernames that get the admin role when they register");
    b.unary_async("/gameverse.auth.v1.Auth/Register", &AuthPlugin::register_account)
        .unary_async("/gameverse.auth.v1.Auth/Login", &AuthPlugin::login)
        .unary_async("/gameverse.auth.v1.Auth/AuthenticateDevice", &AuthPlugin::authenticate_device)
        .unary_async("/gameverse.auth.v1.Auth/Refresh", &AuthPlugin::refresh)
        .unary_async("/gameverse.auth.v1.Auth/Logout", &AuthPlugin::logout)
        .unary_async("/gameverse.auth.v1.Auth/GetAccount", &AuthPlugin::get_account)
        .unary_async("/gameverse.auth.v1.Auth/LinkUsername", &AuthPlugin::link_username)
        .unary_async("/gameverse.auth.v1.Auth/UnlinkDevice", &AuthPlugin::unlink_device)
        .unary_async("/gameverse.auth.v1.Auth/ChangePassword", &AuthPlugin::change_password)
        .unary_async("/gameverse.auth.v1.Auth/GrantRole", &AuthPlugin::grant_role)
        .unary_async("/gameverse.auth.v1.Auth/RevokeRole", &AuthPlugin::revoke_role)
        .unary_async("/gameverse.auth.v1.Auth/GetVerificationKeys", &AuthPlugin::get_verification_keys);
    // Signing in is open to anyone; the rest needs a signed-in caller, roles an admin.
    for (const char* open : {"Register", "Login", "AuthenticateDevice", "Refresh", "GetVerificationKeys"}) {
      b.access(("/gameverse.auth.v1.Auth/" + std::string(open)).c_str(), sdk::kPublic);
    }
    b.access("/gameverse.auth.v1.Auth/GrantRole", b.role("admin"))
        .access("/gameverse.auth.v1.Auth/RevokeRole", b.role("admin"));
  }

  void register_account(sdk::CallContext&, const pb::RegisterRequest& r,
                        sdk::UnaryResponder<pb::Session> out) {
    run(std::move(out), [this, r](pb::Session& reply) {
      fill(reply, service_.register_account(r.username(), r.password()));
    });
  }
  void login(sdk::CallContext& context, const pb::LoginRequest& r, sdk::UnaryResponder<pb::Session> out) {
    run(std::move(out), [this, r, address = client_address(context.peer())](pb::Session& reply) {
      fill(reply, service_.login(r.username(), r.password(), address));
    });
  }
  void authenticate_device(sdk::CallContext&, const pb::DeviceRequest& r,
                           sdk::UnaryResponder<pb::Session> out) {
    run(std::move(out),
        [this, r](pb::Session& reply) { fill(reply, service_.authenticate_device(r.device_id())); });
  }
  void refresh(sdk::CallContext&, const pb::RefreshRequest& r, sdk::UnaryResponder<pb::Session> out) {
    run(std::move(out), [this, r](pb::Session& reply) { fill(reply, service_.refresh(r.refresh_token())); });
  }
  void logout(sdk::CallContext& context, const pb::LogoutRequest& r,
              sdk::UnaryResponder<pb::LogoutReply> out) {
    as_caller(context, std::move(out), [this, r](const TokenClaims& caller, pb::LogoutReply& reply) {
      reply.set_sessions_ended(static_cast<uint32_t>(service_.logout(caller, r.everywhere())));
    });
  }
  void get_account(sdk::CallContext& context, const pb::GetAccountRequest&,
                   sdk::UnaryResponder<pb::Account> out) {
    as_caller(context, std::move(out), [this](const TokenClaims& caller, pb::Account& reply) {
      fill(reply, service_.account(caller));
    });
  }
  void link_username(sdk::CallContext& context, const pb::LinkUsernameRequest& r,
                     sdk::UnaryResponder<pb::Account> out) {
    as_caller(context, std::move(out), [this, r](const TokenClaims& caller, pb::Account& reply) {
      fill(reply, service_.link_username(caller, r.username(), r.password()));
    });
  }
  void unlink_device(sdk::CallContext& context, const pb::UnlinkDeviceRequest& r,
                     sdk::UnaryResponder<pb::Account> out) {
    as_caller(context, std::move(out), [this, r](const TokenClaims& caller, pb::Account& reply) {
      fill(reply, service_.unlink_device(caller, r.device_id()));
    });
  }
  void change_password(sdk::CallContext& context, const pb::ChangePasswordRequest& r,
                       sdk::UnaryResponder<pb::Session> out) {
    as_caller(context, std::move(out), [this, r](const TokenClaims& caller, pb::Session& reply) {
      fill(reply, service_.change_password(caller, r.current_password(), r.new_password()));
    });
  }
  void grant_role(sdk::CallContext& context, const pb::RoleRequest& r, sdk::UnaryResponder<pb::Account> out) {
    as_caller(context, std::move(out), [this, r](const TokenClaims& caller, pb::Account& reply) {
      fill(reply, service_.set_role(caller, r.account_id(), r.role(), true));
    });
  }
  void revoke_role(sdk::CallContext& context, const pb::RoleRequest& r,
                   sdk::UnaryResponder<pb::Account> out) {
    as_caller(context, std::move(out), [this, r](const TokenClaims& caller, pb::Account& reply) {
      fill(reply, service_.set_role(caller, r.account_id(), r.role(), false));
    });
  }
  void get_verification_keys(sdk::CallContext&, const pb::GetVerificationKeysRequest&,
                             sdk::UnaryResponder<pb::VerificationKeys> out) {
    run(std::move(out), [this](pb::VerificationKeys& reply) {
      for (const auto& key : service_.verification_keys()) {
        pb::VerificationKey* k = reply.add_keys();
        k->set_kid(key.kid);
        k->set_algorithm("EdDSA");
        k->set_public_key(key.public_key);
      }
    });
  }

 private:
  // Runs `work` on a worker and answers with its reply, or with the status of what it threw.
  template <class Reply, class Work>
  void run(sdk::UnaryResponder<Reply> out, Work work) {
    auto responder = std::make_shared<sdk::UnaryResponder<Reply>>(std::move(out));
    workers_.post([responder, work = std::move(work)]() mutable {
      Reply reply;
      try {
        work(reply);
        responder->reply(reply);
      } catch (const AuthError& e) {
        responder->fail(status_of(e));
      } catch (const sdk::Error& e) {
        responder->fail(sdk::Status(e.code(), e.what()));
      } catch (const std::exception& e) {
        responder->fail(sdk::Status(sdk::StatusCode::kInternal, e.what()));
      }
    });
  }

  // The same, for calls that act on the caller's account: its access token must verify.
  template <class Reply, class Work>
  void as_caller(sdk::CallContext& context, sdk::UnaryResponder<Reply> out, Work work) {
    std::string token = bearer_token(context);
    if (token.empty()) {
      out.fail(sdk::Status(sdk::StatusCode::kUnauthenticated,
                           "this call needs the metadata authorization: Bearer <access token>"));
      return;
    }
    run(std::move(out), [this, token = std::move(token), work = std::move(work)](Reply& reply) mutable {
      work(service_.authenticate(token), reply);
    });
  }

  gameverse::auth::StoreAccounts accounts_;
  gameverse::auth::StoreSessions sessions_;
  gameverse::auth::StoreSigningKeys keys_;
  gameverse::auth::CacheCounters counters_;
  AuthService service_;
  Workers workers_;  // last: joined first, while the service it calls is still there
};

}  // namespace

GAMEVERSE_PLUGIN(AuthPlugin, "auth", "0.1.0", "Accounts, sessions and tokens")
