// Certificates made by openssl for a test: a CA, a server certificate for 127.0.0.1 and localhost,
// a client certificate from the same CA, and a client certificate from a CA the host does not
// trust; issue() adds more.
#pragma once

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "host_process.hpp"
#include "temp_dir.hpp"

namespace gameverse::testing {

class Certificates {
 public:
  // Files in path(): ca.pem/.key, other.pem/.key (the untrusted CA), server.pem/.key,
  // client.pem/.key (CN=player-client), stranger.pem/.key (from other).
  Certificates() {
    run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem"
        "; openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out "
        "other.pem");
    issue("server", "ca", "localhost", "IP:127.0.0.1,DNS:localhost");
    issue("client", "ca", "player-client");
    issue("stranger", "other", "stranger");
  }

  // <name>.pem and <name>.key: a certificate for `common_name` signed by the CA <ca>.pem, with
  // `subject_alt_names` ("IP:127.0.0.1,DNS:a.internal") when not empty, valid for `days` from now
  // (-1: expired yesterday).
  void issue(const std::string& name, const std::string& ca, const std::string& common_name,
             const std::string& subject_alt_names = "", int days = 2) {
    std::string ext;
    if (!subject_alt_names.empty()) {
      run("printf 'subjectAltName=" + subject_alt_names + "\\n' > " + name + ".ext");
      ext = " -extfile " + name + ".ext";
    }
    run("openssl req -newkey rsa:2048 -nodes -subj /CN=" + common_name + " -keyout " + name + ".key -out " +
        name + ".csr; openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
        ".key -CAcreateserial -days " + std::to_string(days) + ext + " -out " + name + ".pem");
  }

  std::string path(const std::string& name) const { return (dir_.path() / name).string(); }
  std::string pem(const std::string& name) const { return read_file(dir_.path() / name); }

 private:
  void run(const std::string& commands) const {
    const std::string script = "{ set -e; cd " + dir_.path().string() + "; " + commands + "; } > " +
                               dir_.path().string() + "/openssl.log 2>&1";
    if (std::system(script.c_str()) != 0) {
      throw std::runtime_error("openssl could not make the test certificates:\n" +
                               read_file(dir_.path() / "openssl.log"));
    }
  }

  TempDir dir_;
};

}  // namespace gameverse::testing
