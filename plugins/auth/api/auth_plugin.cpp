// gameverse.auth.v1.Auth: maps the protobuf API onto the auth domain. The caller comes from the
// host's gate (the principal of the call), never from parsing the token here.
#include <gameverse/sdk/plugin.hpp>

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

// The caller the host's gate verified: the account, its session and its roles.
TokenClaims caller_of(const sdk::CallContext& context) {
  const sdk::Principal principal = context.principal();
  if (principal.anonymous()) {
    throw AuthError(AuthError::Kind::kUnauthenticated,
                    "this call needs the metadata authorization: Bearer <access token>");
  }
  TokenClaims claims;
  claims.subject = principal.user_id;
  claims.session_id = principal.session_id;
  claims.roles = principal.roles;
  return claims;
}

// Domain errors become their status; the store's (sdk::Error, e.g. DATA_LOSS for a corrupt record)
// keep theirs; anything else the SDK turns into INTERNAL.
template <class Work>
sdk::Status answer(Work&& work) {
  try {
    work();
    return sdk::Status::ok();
  } catch (const AuthError& e) {
    return status_of(e);
  }
}

class AuthPlugin final : public sdk::Plugin {
 public:
  explicit AuthPlugin(sdk::InitContext& init)
      : accounts_(init.host.store()),
        sessions_(init.host.store()),
        keys_(init.host.store()),
        counters_(init.host.cache()),
        service_(settings_from(init.host), accounts_, sessions_, keys_, counters_, now_unix_ms) {
    service_.verification_keys();  // the first signing key exists (or is made) before serving
  }

  // Every method waits on the store or hashes a password (Argon2id: tens of milliseconds and
  // megabytes by design), so every method runs on the host's pool for blocking work.
  static void describe(sdk::PluginBuilder<AuthPlugin>& b) {
    // Signing in is open to anyone; the rest needs a signed-in caller, roles an admin.
    b.service("gameverse.auth.v1.Auth")
        .blocking("Register", &AuthPlugin::register_account, sdk::kPublic)
        .blocking("Login", &AuthPlugin::login, sdk::kPublic)
        .blocking("AuthenticateDevice", &AuthPlugin::authenticate_device, sdk::kPublic)
        .blocking("Refresh", &AuthPlugin::refresh, sdk::kPublic)
        .blocking("GetVerificationKeys", &AuthPlugin::get_verification_keys, sdk::kPublic)
        .blocking("Logout", &AuthPlugin::logout)
        .blocking("GetAccount", &AuthPlugin::get_account)
        .blocking("LinkUsername", &AuthPlugin::link_username)
        .blocking("UnlinkDevice", &AuthPlugin::unlink_device)
        .blocking("ChangePassword", &AuthPlugin::change_password)
        .blocking("GrantRole", &AuthPlugin::grant_role, sdk::role("admin"))
        .blocking("RevokeRole", &AuthPlugin::revoke_role, sdk::role("admin"));
    b.collection("accounts")
        .collection("usernames")
        .collection("devices")
        .collection("sessions")
        .collection("refresh")
        .collection("keys");
    b.config_int("access_token_ttl_s", 900, "Lifetime of an access token (JWT), in seconds", sdk::at_least(1))
        .config_int("refresh_token_ttl_h", 24 * 30, "How long a session can be refreshed, in hours",
                    sdk::at_least(1))
        .config_int("key_rotation_h", 24 * 7,
                    "A new signing key this often, in hours; old keys verify until their tokens expire",
                    sdk::at_least(1))
        .config_string(
            "signing_key", "",
            "Base64 Ed25519 seed (openssl rand -base64 32); empty: generated and kept in the store")
        .config_int("argon2_opslimit", 3, "Argon2id passes", sdk::between(1, 64))
        .config_int("argon2_memlimit_kib", 64 * 1024, "Argon2id memory, in KiB",
                    sdk::between(8, 4 * 1024 * 1024))
        .config_int("max_failed_logins_per_account", 5, "Failed logins in the window that lock an account",
                    sdk::at_least(1))
        .config_int("max_failed_logins_per_address", 20,
                    "Failed logins in the window that lock a client address", sdk::at_least(1))
        .config_int("failed_login_window_s", 900, "The window failed logins are counted in, in seconds",
                    sdk::at_least(1))
        .config_int("lockout_s", 900, "How long a lock lasts, in seconds", sdk::at_least(1));
  }

  sdk::Status register_account(sdk::CallContext&, const pb::RegisterRequest& r, pb::Session& reply) {
    return answer([&] { fill(reply, service_.register_account(r.username(), r.password())); });
  }
  sdk::Status login(sdk::CallContext& context, const pb::LoginRequest& r, pb::Session& reply) {
    return answer(
        [&] { fill(reply, service_.login(r.username(), r.password(), client_address(context.peer()))); });
  }
  sdk::Status authenticate_device(sdk::CallContext&, const pb::DeviceRequest& r, pb::Session& reply) {
    return answer([&] { fill(reply, service_.authenticate_device(r.device_id())); });
  }
  sdk::Status refresh(sdk::CallContext&, const pb::RefreshRequest& r, pb::Session& reply) {
    return answer([&] { fill(reply, service_.refresh(r.refresh_token())); });
  }
  sdk::Status logout(sdk::CallContext& context, const pb::LogoutRequest& r, pb::LogoutReply& reply) {
    return answer([&] {
      reply.set_sessions_ended(static_cast<uint32_t>(service_.logout(caller_of(context), r.everywhere())));
    });
  }
  sdk::Status get_account(sdk::CallContext& context, const pb::GetAccountRequest&, pb::Account& reply) {
    return answer([&] { fill(reply, service_.account(caller_of(context))); });
  }
  sdk::Status link_username(sdk::CallContext& context, const pb::LinkUsernameRequest& r, pb::Account& reply) {
    return answer(
        [&] { fill(reply, service_.link_username(caller_of(context), r.username(), r.password())); });
  }
  sdk::Status unlink_device(sdk::CallContext& context, const pb::UnlinkDeviceRequest& r, pb::Account& reply) {
    return answer([&] { fill(reply, service_.unlink_device(caller_of(context), r.device_id())); });
  }
  sdk::Status change_password(sdk::CallContext& context, const pb::ChangePasswordRequest& r,
                              pb::Session& reply) {
    return answer([&] {
      fill(reply, service_.change_password(caller_of(context), r.current_password(), r.new_password()));
    });
  }
  sdk::Status grant_role(sdk::CallContext& context, const pb::RoleRequest& r, pb::Account& reply) {
    return answer(
        [&] { fill(reply, service_.set_role(caller_of(context), account_id_of(r), r.role(), true)); });
  }
  sdk::Status revoke_role(sdk::CallContext& context, const pb::RoleRequest& r, pb::Account& reply) {
    return answer(
        [&] { fill(reply, service_.set_role(caller_of(context), account_id_of(r), r.role(), false)); });
  }
  sdk::Status get_verification_keys(sdk::CallContext&, const pb::GetVerificationKeysRequest&,
                                    pb::VerificationKeys& reply) {
    return answer([&] {
      for (const auto& key : service_.verification_keys()) {
        pb::VerificationKey* k = reply.add_keys();
        k->set_kid(key.kid);
        k->set_algorithm("EdDSA");
        k->set_public_key(key.public_key);
      }
    });
  }

 private:
  // The account a role request names, by id or by username.
  std::string account_id_of(const pb::RoleRequest& r) {
    if (r.username().empty()) return r.account_id();
    if (!r.account_id().empty()) {
      throw AuthError(AuthError::Kind::kInvalidArgument,
                      "name the account by account_id or by username, not both");
    }
    return service_.account_id_of(r.username());
  }

  gameverse::auth::StoreAccounts accounts_;
  gameverse::auth::StoreSessions sessions_;
  gameverse::auth::StoreSigningKeys keys_;
  gameverse::auth::CacheCounters counters_;
  AuthService service_;
};

}  // namespace

GAMEVERSE_PLUGIN(AuthPlugin, "auth", "0.1.0", "Accounts, sessions and tokens")
