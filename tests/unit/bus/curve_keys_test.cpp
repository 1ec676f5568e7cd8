// CurveZMQ key files: what keygen writes (modes, ZeroMQ's certificate
// format) reads back; allow-lists from a directory or one file; bad files
// are errors naming the file.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <zmq.h>

#include "asgi_bridge/bus/curve.hpp"

namespace asgi_bridge::bus {
namespace {

namespace fs = std::filesystem;

class CurveKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("curve-keys-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path(name)) << text; }

  fs::path dir_;
};

mode_t mode_of(const std::string& path) {
  struct stat info {};
  ::stat(path.c_str(), &info);
  return info.st_mode & 0777;
}

TEST_F(CurveKeys, KeygenWritesAPairThatReadsBack) {
  write_certificates(path("gw"));
  EXPECT_EQ(mode_of(path("gw.key_secret")), 0600u);
  EXPECT_EQ(mode_of(path("gw.key")), 0644u);
  auto pair = read_certificate(path("gw.key_secret"), true);
  auto shared = read_certificate(path("gw.key"), false);
  EXPECT_EQ(pair.public_key, shared.public_key);
  EXPECT_EQ(shared.secret_key, "");
  char derived[41] = {};
  ASSERT_EQ(zmq_curve_public(derived, pair.secret_key.c_str()), 0);
  EXPECT_EQ(pair.public_key, derived);
  EXPECT_THROW(read_certificate(path("gw.key"), true), std::runtime_error);  // no secret in the public file
}

TEST_F(CurveKeys, ReadsZcertTextWithCommentsAndMetadata) {
  write("w.key", "#   ZeroMQ CURVE Public Certificate\n#   public-key = \"commented out\"\n\nmetadata\n"
                 "    name = \"w\"\ncurve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n");
  EXPECT_EQ(read_certificate(path("w.key"), false).public_key, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
}

TEST_F(CurveKeys, BadFilesAreErrorsNamingTheFile) {
  write("short.key", "curve\n    public-key = \"tooshort\"\n");
  write("empty.key", "metadata\ncurve\n");
  for (const char* name : {"short.key", "empty.key", "missing.key"}) {
    try {
      read_certificate(path(name), false);
      ADD_FAILURE() << name;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST_F(CurveKeys, AllowListFromADirectoryOfKeyFilesOrOneFile) {
  fs::create_directories(dir_ / "workers");
  write_certificates(path("workers/a"));
  write_certificates(path("workers/b"));
  write("workers/notes.txt", "public-key = \"not a key file: ignored\"\n");
  auto keys = read_authorized_keys(path("workers"));
  ASSERT_EQ(keys.size(), 2u);  // a.key and b.key; never the .key_secret files
  EXPECT_EQ(keys[0], read_certificate(path("workers/a.key"), false).public_key);

  std::ifstream a(path("workers/a.key")), b(path("workers/b.key"));
  std::string both((std::istreambuf_iterator<char>(a)), {});
  both.append((std::istreambuf_iterator<char>(b)), {});
  write("all-workers", both);
  EXPECT_EQ(read_authorized_keys(path("all-workers")), keys);
  EXPECT_THROW(read_authorized_keys(path("nothing-here")), std::runtime_error);
}

}  // namespace
}  // namespace asgi_bridge::bus
