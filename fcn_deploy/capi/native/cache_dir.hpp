// Where the native library keeps OpenVINO's compiled models, so that opening a model the second time (in any
// process of the same user) loads the compiled model instead of compiling it again. OpenVINO keys each entry
// by the model's content and the compile settings, so a re-exported file never meets a stale entry.
//
//   FCN_DEPLOY_CACHE_DIR=DIR   that folder (created if missing);
//   FCN_DEPLOY_CACHE_DIR=      (set and empty) no cache;
//   unset                      $XDG_CACHE_HOME/fcn-deploy/openvino, else $HOME/.cache/fcn-deploy/openvino,
//                              else .cache/fcn-deploy/openvino under the user's home from the password database.
//
// A folder that cannot be created or written does not stop a model from opening: it compiles without a
// cache, and the library writes one warning line to stderr (once per process) naming the folder and the fix.
#pragma once

#include <string>

namespace fcn {

inline constexpr const char* kCacheDirVariable = "FCN_DEPLOY_CACHE_DIR";

// The cache folder to use now (created, writable), or "" for no cache.
std::string compiled_model_cache_dir();

}  // namespace fcn
