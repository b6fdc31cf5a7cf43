// `gvctl new NAME`: writes an out-of-tree plugin project that builds against an installed SDK.
#pragma once

#include <filesystem>
#include <string>

namespace gameverse::gvctl {

// Creates directory/NAME with a .proto, a handler, a CMake project and a test that loads the
// plugin into a real host. Throws std::runtime_error with a message for the user.
std::filesystem::path scaffold(const std::string& name, const std::filesystem::path& directory);

}  // namespace gameverse::gvctl
