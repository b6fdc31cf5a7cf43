// Metadata the host's HTTP gateway adds to the calls it makes for its clients. Clients cannot set
// these: the gateway drops every gameverse-* header it receives.
#pragma once

namespace gameverse::rpc {

// The HTTP client's address (gRPC's peer format) on a stream the gateway carries over the
// in-process channel, believed only beside the server's forwarding key (Server::forwarding_key).
inline constexpr const char* kForwardedPeerKey = "gameverse-http-peer";
inline constexpr const char* kForwardingKeyKey = "gameverse-forwarding-key";
// Present on every call that came through the gateway: its client is not on this machine's
// loopback whatever its address, since a proxy or a browser page may stand in between.
inline constexpr const char* kViaGatewayKey = "gameverse-via";

}  // namespace gameverse::rpc
