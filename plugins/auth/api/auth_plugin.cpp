// gameverse.auth.v1.Auth: maps the protobuf API onto the auth domain. The caller comes from the
// host's gate (the principal of the call), never from parsing the token here.
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "domain/auth_service.hpp"
#include "domain/client_address.hpp"
#include "gameverse/auth/v1/auth.pb.h"
#include "infrastructure/store_repositories.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::auth::v1;
using gameverse::auth::AuthError;
using gameverse::auth::AuthService;
using gameverse::auth::TokenClaims;

using sdk::answer;
using sdk::now_unix_ms;

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
  s.slow_down_after_failures = host.config_int("slow_down_after_failures");
  s.slow_down_max = std::chrono::seconds(host.config_int("slow_down_max_s"));
  s.known_address_ttl = std::chrono::hours(24 * host.config_int("known_address_days"));
  s.registrations_per_address_per_hour = host.config_int("registrations_per_address_per_hour");
  s.device_sign_ins_per_address_per_minute = host.config_int("device_sign_ins_per_address_per_minute");
  s.device_accounts_per_address_per_hour = host.config_int("device_accounts_per_address_per_hour");
  s.hasher.limiter =
      std::make_shared<gameverse::auth::HashLimiter>(static_cast<size_t>(host.config_int("hash_workers")),
                                                     static_cast<size_t>(host.config_int("hash_queue")));
  s.signing_key_seed = host.config_string("signing_key");
  s.generate_keys = host.config_bool("generate_keys");
  s.validation = {host.config_string("issuer"), host.config_string("audience"),
                  host.config_int("clock_skew_s") * 1000};
  return s;
}

// The key that seals generated signing keys in the store: from the file `key_encryption_key_file`
// names, else from the environment variable GAMEVERSE_AUTH_KEK; empty when neither is set.
std::string key_encryption_key(const sdk::Host& host) {
  const std::string path = host.config_string("key_encryption_key_file");
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) {
      throw AuthError(AuthError::Kind::kInvalidArgument,
                      "key_encryption_key_file: cannot read '" + path + "'");
    }
    std::string text;
    in >> text;  // the base64 text, without surrounding whitespace
    return gameverse::auth::key_encryption_key(text, "key_encryption_key_file '" + path + "'");
  }
  const char* env = std::getenv("GAMEVERSE_AUTH_KEK");
  if (env != nullptr && *env != '\0') return gameverse::auth::key_encryption_key(env, "GAMEVERSE_AUTH_KEK");
  return {};
}

// Revocations go out on the host's pub/sub, to the gate of every host (with Redis, across hosts).
class PubSubRevocations final : public gameverse::auth::Revocations {
 public:
  explicit PubSubRevocations(sdk::Host host) : host_(host) {}
  void publish(const gameverse::auth::Revocation& r) override {
    pb::Revocation message;
    message.set_session_id(r.session_id);
    message.set_account_id(r.account_id);
    message.set_issued_before_unix_ms(r.issued_before_unix_ms);
    message.set_until_unix_ms(r.until_unix_ms);
    try {
      host_.publish(gameverse::tokens::kRevocationTopic, message.SerializeAsString());
    } catch (const sdk::Error& e) {
      // The session is ended in the store all the same; its access tokens then last until they expire.
      host_.warn(std::string("auth: a revocation was not published; its access tokens stay valid until they "
                             "expire: ") +
                 e.what());
    }
  }

 private:
  sdk::Host host_;
};

void fill(pb::Account& out, const gameverse::auth::Account& a) {
  out.set_id(a.id);
  out.set_username(a.username);
  for (const auto& r : a.roles) out.add_roles(r);
  for (const auto& d : a.device_ids) out.add_device_fingerprints(gameverse::auth::device_fingerprint(d));
  out.set_created_unix_ms(a.created_unix_ms);
}

void fill(pb::Session& out, const gameverse::auth::IssuedSession& s) {
  out.set_access_token(s.access_token);
  out.set_access_expires_unix_ms(s.access_expires_unix_ms);
  out.set_refresh_token(s.refresh_token);
  out.set_refresh_expires_unix_ms(s.refresh_expires_unix_ms);
  fill(*out.mutable_account(), s.account);
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

// The same for a call that may hash a password: waiting for a hash worker ends with the call.
template <class Work>
sdk::Status answer_hashing(const sdk::CallContext& context, Work&& work) {
  const gameverse::auth::HashLimiter::CallScope scope(context.deadline(),
                                                      [&context] { return context.cancelled(); });
  return answer(std::forward<Work>(work));
}

std::vector<gameverse::auth::Network> trusted_proxies_from(const sdk::Host& host) {
  try {
    return gameverse::auth::parse_networks(host.config_string("trusted_proxies"), "trusted_proxies");
  } catch (const AuthError& e) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument, e.what());
  }
}

class AuthPlugin final : public sdk::Plugin {
 public:
  explicit AuthPlugin(sdk::InitContext& init)
      : accounts_(init.host.store()),
        sessions_(init.host.store()),
        keys_(init.host.store(), key_encryption_key(init.host)),
        counters_(init.host.cache()),
        revocations_(init.host),
        service_(settings_from(init.host), accounts_, sessions_, keys_, counters_, now_unix_ms,
                 &revocations_),
        trusted_proxies_(trusted_proxies_from(init.host)) {
    // The first signing key exists (or is made) before serving, and every stored one opens.
    service_.verification_keys();
    if (init.host.config_string("signing_key").empty() && !keys_.sealed()) {
      init.host.warn(
          "auth: generated signing keys are stored in plain text; set key_encryption_key_file or "
          "GAMEVERSE_AUTH_KEK to seal them, or configure signing_key with generate_keys = false");
    }
    const auto purge_every = std::chrono::seconds(init.host.config_int("purge_interval_s"));
    purge_timer_ = init.host.start_timer(
        purge_every, purge_every, [this] { service_.purge_ended_sessions(); }, sdk::Run::kBlocking);
  }

  // Every method waits on the store or hashes a password (Argon2id: tens of milliseconds and
  // megabytes by design), so every method runs on the host's pool for blocking work. Hashing
  // takes at most hash_workers + hash_queue of the plugin's threads there (HashLimiter), so the
  // methods that do not hash always find one.
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
        .config_string("signing_key", "",
                       "Base64 Ed25519 seed (openssl rand -base64 32), kept in memory only; empty: keys are "
                       "generated and kept in the store")
        .config_bool("generate_keys", true,
                     "Generate and rotate signing keys in the store; false: signing_key is required")
        .config_string("key_encryption_key_file", "",
                       "File with a base64 32-byte key that seals generated signing keys in the store; "
                       "empty: the environment variable GAMEVERSE_AUTH_KEK, if set")
        .config_string("issuer", gameverse::tokens::kDefaultIssuer, "The tokens' issuer (iss)",
                       sdk::non_empty())
        .config_string("audience", gameverse::tokens::kDefaultAudience, "The tokens' audience (aud)",
                       sdk::non_empty())
        .config_int(
            "clock_skew_s", gameverse::tokens::kClockSkewMs / 1000,
            "How far apart hosts' clocks may be: tokens are accepted this long past exp and before nbf",
            sdk::between(0, 300))
        .config_int("argon2_opslimit", 3, "Argon2id passes", sdk::between(1, 64))
        .config_int("argon2_memlimit_kib", 64 * 1024, "Argon2id memory, in KiB",
                    sdk::between(8, 4 * 1024 * 1024))
        .config_int("max_failed_logins_per_account", 5,
                    "Failed logins of one username from one client address in the window that lock that "
                    "username from that address",
                    sdk::at_least(1))
        .config_int("max_failed_logins_per_address", 20,
                    "Failed logins in the window that lock a client address", sdk::at_least(1))
        .config_int("failed_login_window_s", 900, "The window failed logins are counted in, in seconds",
                    sdk::at_least(1))
        .config_int("lockout_s", 900, "How long a lock lasts, in seconds", sdk::at_least(1))
        .config_int("slow_down_after_failures", 10,
                    "Failed logins of one username from anywhere in the window after which an address "
                    "it has not signed in from gets one try per delay (1 s, doubling)",
                    sdk::at_least(1))
        .config_int("slow_down_max_s", 60, "The longest such delay, in seconds", sdk::between(1, 3600))
        .config_int("known_address_days", 30,
                    "An address an account signed in from is not slowed down for this many days",
                    sdk::between(1, 365))
        .config_int("registrations_per_address_per_hour", 20,
                    "Register calls one client address may make an hour", sdk::at_least(1))
        .config_int("device_sign_ins_per_address_per_minute", 60,
                    "AuthenticateDevice calls one client address may make a minute", sdk::at_least(1))
        .config_int("device_accounts_per_address_per_hour", 20,
                    "Accounts AuthenticateDevice may create for one client address an hour", sdk::at_least(1))
        .config_string("trusted_proxies", "",
                       "Comma-separated addresses or CIDRs of proxies whose x-forwarded-for names the client "
                       "(e.g. \"10.0.0.0/8, fd00::/8\"); empty: the transport peer is the client")
        .config_int(
            "hash_workers", 2,
            "Password hashes at once; keep hash_workers + hash_queue below [blocking] threads_per_plugin",
            sdk::between(1, 64))
        .config_int("hash_queue", 1, "Calls that may wait for a hash worker; more answer RESOURCE_EXHAUSTED",
                    sdk::between(0, 1024))
        .config_int("purge_interval_s", 3600,
                    "How often ended sessions and refresh records nobody can use are deleted, in seconds",
                    sdk::at_least(1));
  }

  sdk::Status register_account(sdk::CallContext& context, const pb::RegisterRequest& r, pb::Session& reply) {
    return answer_hashing(context, [&] {
      fill(reply, service_.register_account(r.username(), r.password(), client_address_of(context)));
    });
  }
  sdk::Status login(sdk::CallContext& context, const pb::LoginRequest& r, pb::Session& reply) {
    return answer_hashing(context, [&] {
      fill(reply, service_.login(r.username(), r.password(), client_address_of(context)));
    });
  }
  sdk::Status authenticate_device(sdk::CallContext& context, const pb::DeviceRequest& r, pb::Session& reply) {
    return answer(
        [&] { fill(reply, service_.authenticate_device(r.device_id(), client_address_of(context))); });
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
    return answer_hashing(context, [&] {
      fill(reply, service_.link_username(caller_of(context), r.username(), r.password(),
                                         client_address_of(context)));
    });
  }
  sdk::Status unlink_device(sdk::CallContext& context, const pb::UnlinkDeviceRequest& r, pb::Account& reply) {
    return answer([&] { fill(reply, service_.unlink_device(caller_of(context), r.device_id())); });
  }
  sdk::Status change_password(sdk::CallContext& context, const pb::ChangePasswordRequest& r,
                              pb::Session& reply) {
    return answer_hashing(context, [&] {
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
      reply.set_issuer(service_.validation().issuer);
      reply.set_audience(service_.validation().audience);
      reply.set_clock_skew_ms(service_.validation().clock_skew_ms);
      for (const auto& key : service_.verification_keys()) {
        pb::VerificationKey* k = reply.add_keys();
        k->set_kid(key.kid);
        k->set_algorithm("EdDSA");
        k->set_public_key(key.public_key);
      }
    });
  }

 private:
  std::string client_address_of(const sdk::CallContext& context) const {
    return gameverse::auth::client_address(context.peer(), context.metadata("x-forwarded-for"),
                                           trusted_proxies_);
  }

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
  PubSubRevocations revocations_;
  AuthService service_;
  std::vector<gameverse::auth::Network> trusted_proxies_;
  sdk::Timer purge_timer_;  // first to go: it runs purges on service_
};

}  // namespace

GAMEVERSE_PLUGIN(AuthPlugin, "auth", "0.1.0", "Accounts, sessions and tokens")
