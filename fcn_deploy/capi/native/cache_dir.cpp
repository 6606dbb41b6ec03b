// The compiled-model cache folder: chosen from the environment, created with the user's permissions only.
#include "cache_dir.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace fcn {
namespace {

constexpr const char* kCacheSubdir = "/fcn-deploy/openvino";

std::string environment(const char* name) {
    const char* value = std::getenv(name);
    return value == nullptr ? std::string() : std::string(value);
}

std::string password_home() {
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    if (getpwuid_r(getuid(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr ||
        found->pw_dir == nullptr)
        return "";
    return found->pw_dir;
}

// The default folder ("" where neither the environment nor the password database names a home).
std::string default_dir() {
    const std::string xdg = environment("XDG_CACHE_HOME");
    if (!xdg.empty() && xdg[0] == '/') return xdg + kCacheSubdir;  // the XDG spec ignores relative paths
    std::string home = environment("HOME");
    if (home.empty()) home = password_home();
    return home.empty() ? "" : home + "/.cache" + kCacheSubdir;
}

// Create ``path`` and its missing parents (mode 0700); "" or the reason it cannot be made.
std::string make_dirs(const std::string& path) {
    for (std::size_t slash = path.find('/', 1); ; slash = path.find('/', slash + 1)) {
        const std::string part = slash == std::string::npos ? path : path.substr(0, slash);
        if (!part.empty() && mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
            return "cannot create " + part + ": " + std::strerror(errno);
        if (slash == std::string::npos) break;
    }
    struct stat info {};
    if (stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) return "it is not a folder";
    if (access(path.c_str(), W_OK | X_OK) != 0) return std::string("it is not writable: ") + std::strerror(errno);
    return "";
}

void warn_once(const std::string& path, const std::string& reason) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
        std::fprintf(stderr,
                     "fcn_deploy: warning: no compiled-model cache, models compile on every open: the folder %s "
                     "cannot be used (%s); set %s to a writable folder, or to an empty value to turn the cache "
                     "off\n",
                     path.c_str(), reason.c_str(), kCacheDirVariable);
    });
}

}  // namespace

std::string compiled_model_cache_dir() {
    const char* chosen = std::getenv(kCacheDirVariable);
    const std::string path = chosen != nullptr ? std::string(chosen) : default_dir();
    if (path.empty()) return "";
    const std::string problem = make_dirs(path);
    if (problem.empty()) return path;
    warn_once(path, problem);
    return "";
}

}  // namespace fcn
