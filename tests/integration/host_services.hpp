// What the reflection and health Watch tests share: a host with echo, hello-c and the importer
// fixture in a plugin directory of its own, and the admin service for loading and unloading.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "gameverse/host/v1/admin.grpc.pb.h"
#include "host_process.hpp"

namespace gameverse::testing {

class HostServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::copy_file(GV_PLUGIN_DIR "/echo.so", dir_.path() / "echo.so");
    std::filesystem::copy_file(GV_PLUGIN_DIR "/hello-c.so", dir_.path() / "hello-c.so");
    std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/importer.so", dir_.path() / "importer.so");
    host_ = std::make_unique<HostProcess>(config(""));
    admin_ = host::v1::PluginAdmin::NewStub(host_->channel());
  }

  // Loopback callers administer the host without a token here.
  std::string config(const std::string& server_section) const {
    return "[server]\n" + server_section + "[host]\nwatch = false\nplugin_dir = \"" + dir_.path().string() +
           "\"\n[admin]\nallow_loopback = true\n[[plugin]]\nname = \"echo\"\n[[plugin]]\nname = \"hello-c\"\n"
           "[[plugin]]\nname = \"importer\"\n";
  }

  void restart(const std::string& server_section) {
    host_.reset();
    host_ = std::make_unique<HostProcess>(config(server_section));
    admin_ = host::v1::PluginAdmin::NewStub(host_->channel());
  }

  void unload(const std::string& name) {
    grpc::ClientContext context;
    host::v1::UnloadPluginRequest request;
    request.set_name(name);
    host::v1::OperationResult result;
    const grpc::Status status = admin_->UnloadPlugin(&context, request, &result);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // `path`: for a plugin not in the config, its file in the plugin directory.
  void load(const std::string& name, const std::string& path = "") {
    grpc::ClientContext context;
    host::v1::LoadPluginRequest request;
    request.set_name(name);
    request.set_path(path);
    host::v1::OperationResult result;
    const grpc::Status status = admin_->LoadPlugin(&context, request, &result);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // A reload the host may refuse: its status.
  grpc::Status try_reload(const std::string& name) {
    grpc::ClientContext context;
    host::v1::ReloadPluginRequest request;
    request.set_name(name);
    host::v1::OperationResult result;
    return admin_->ReloadPlugin(&context, request, &result);
  }

  uint64_t reload(const std::string& name) {
    grpc::ClientContext context;
    host::v1::ReloadPluginRequest request;
    request.set_name(name);
    host::v1::OperationResult result;
    const grpc::Status status = admin_->ReloadPlugin(&context, request, &result);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return result.generation();
  }

  TempDir dir_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<host::v1::PluginAdmin::Stub> admin_;
};

}  // namespace gameverse::testing
