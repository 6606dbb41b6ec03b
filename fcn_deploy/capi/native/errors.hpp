// Errors of the native library (mirrors fcn_deploy/errors.py): every failure is an fcn::Error carrying the
// fcn_status it maps to at the C boundary, a message and the fix, shown as "message\n  fix: hint".
#pragma once

#include <stdexcept>
#include <string>

#include "fcn_deploy.h"

namespace fcn {

class Error : public std::runtime_error {
public:
    Error(fcn_status status, const std::string& message, const std::string& fix = "")
        : std::runtime_error(fix.empty() ? message : message + "\n  fix: " + fix), status_(status) {}

    fcn_status status() const noexcept { return status_; }

private:
    fcn_status status_;
};

// The file is not a readable fcn-deploy artifact (ArtifactError).
inline Error artifact_error(const std::string& message, const std::string& fix = "") {
    return Error(FCN_E_BAD_MODEL, message, fix);
}

// The caller passed something the API refuses (InputError).
inline Error input_error(const std::string& message, const std::string& fix = "") {
    return Error(FCN_E_INVALID_ARG, message, fix);
}

// What the request needs is not available in this library or on this machine (MissingComponentError).
inline Error missing_component(const std::string& message, const std::string& fix = "") {
    return Error(FCN_E_BACKEND_UNAVAILABLE, message, fix);
}

}  // namespace fcn
