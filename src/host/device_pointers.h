// Host-side checks that the pointers a kernel will dereference are device memory of the current
// device (a plain host pointer, or another GPU's memory, would fault inside the kernel instead of
// returning an error that names the argument).
#pragma once

#include <initializer_list>
#include <utility>

#include "signalgemm/types.h"

namespace signalgemm::host {

// Null passes (optional arguments are checked for presence elsewhere). A driver query: no
// synchronization, allowed during stream capture.
Status check_device_pointer(const void* ptr, const char* name);

// The first failing check of `pointers` ({pointer, argument name}), or ok.
Status check_device_pointers(std::initializer_list<std::pair<const void*, const char*>> pointers);

}  // namespace signalgemm::host
