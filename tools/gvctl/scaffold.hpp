// `gvctl new NAME`: writes an out-of-tree plugin project that builds against an installed SDK.
#pragma once

#include <filesystem>
#include <string>

namespace gameverse::gvctl {

// Creates directory/NAME in the shape of every service plugin: a .proto; domain/ (rules and a
// repository interface, no SDK); infrastructure/ (the repository over the host's store); api/ (the
// plugin class); tests/ (the domain alone, the plugin in the installed host through gRPC); and a
// CMake project over find_package(GameVerse). Throws std::runtime_error with a message for the user.
std::filesystem::path scaffold(const std::string& name, const std::filesystem::path& directory);

}  // namespace gameverse::gvctl
